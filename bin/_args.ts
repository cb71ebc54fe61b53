// What the `sluice` commands share about their arguments: the parsed flag values and the error
// for a command called the wrong way. Its own file so that the command table (commands.ts),
// which loads each command's module, and those modules never import each other in a circle.

export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** A mistake in how the command was called: reported on one line with exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
