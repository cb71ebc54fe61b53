// File-system failures as SluiceErrors: ENOSPC and EDQUOT become the retriable DISK_FULL, every
// other errno IO_ERROR. The error base itself lives in record/ (below engine and protocol).

import { SluiceError } from "../record/mod.ts";

/** Maps a file-system error to a SluiceError, keeping the original as `cause`. */
export function ioError(error: unknown, what: string): SluiceError {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = error instanceof Error ? error.message : String(error);
  if (errno === "ENOSPC" || errno === "EDQUOT") {
    return new SluiceError(
      "DISK_FULL",
      `Disk full while ${what}: ${reason}`,
      { errno },
      {
        cause: error,
      },
    );
  }
  return new SluiceError(
    "IO_ERROR",
    `I/O error while ${what}: ${reason}`,
    { errno },
    {
      cause: error,
    },
  );
}
