// Lets pending socket and file events run before long engine work (creating, opening or
// deleting thousands of partitions) goes on. A macrotask of setTimeout, not setImmediate:
// measured with a busy loop of 5 ms slices against an echo socket for 500 ms, setImmediate
// yields let 0 round trips through under Deno and 36 under Bun, setTimeout(0) 3,138 and 2,707;
// the runtimes poll for I/O before timers, not before immediates. Each yield costs about a
// millisecond (the timers' resolution), which work cut into 10 ms slices can afford.

export function yieldToIo(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
