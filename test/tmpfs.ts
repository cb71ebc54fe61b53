// A real, tiny file system for full-disk tests: a tmpfs mounted at a new directory (Linux, as
// root), so that writes get a real ENOSPC from the kernel. Tests skip with the reason where one
// cannot be mounted.

import { spawnSync } from "node:child_process";
import fs from "node:fs";

/** Whether this machine lets a test mount a tmpfs: false, or the reason it does not. */
export function tmpfsUnavailable(): false | string {
  if (process.platform !== "linux") return "tmpfs mounts need Linux";
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const probe = mountTinyTmpfs(64 * 1024);
  if ("reason" in probe) return probe.reason;
  unmount(probe.path);
  return false;
}

/** Mounts a tmpfs of `sizeBytes` at a new directory, or says why it cannot. */
export function mountTinyTmpfs(sizeBytes: number): { path: string } | { reason: string } {
  const path = fs.mkdtempSync("/tmp/sluice-enospc-");
  const options = ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", path];
  const mounted = spawnSync("mount", options, { encoding: "utf8" });
  if (mounted.status === 0) return { path };
  fs.rmSync(path, { recursive: true, force: true });
  const why = mounted.stderr?.trim() || String(mounted.error);
  return { reason: `mount -t tmpfs is not permitted here: ${why}` };
}

/** Unmounts (lazily, if busy) and removes the mount point. */
export function unmount(path: string): void {
  const result = spawnSync("umount", [path], { encoding: "utf8" });
  if (result.status !== 0) spawnSync("umount", ["-l", path]);
  fs.rmSync(path, { recursive: true, force: true });
}

/** Fills the rest of the file system with a new file at `path`, down to the last byte. */
export function fillUp(path: string): void {
  const fd = fs.openSync(path, "w");
  try {
    for (const chunkBytes of [4096, 1]) {
      const chunk = new Uint8Array(chunkBytes);
      try {
        // Bounded by the file system's size: each write takes space until ENOSPC.
        for (;;) fs.writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
