// What examples/embed.ts prints, wherever it runs: from the repository or an installed tarball.

export const EMBED_OUTPUT = [
  "appended offsets 0..2",
  "offset 1: banana",
  "offset 2: cherry",
  "first offset at or after +1.5 s: 2",
  "",
].join("\n");
