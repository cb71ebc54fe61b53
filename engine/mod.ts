// The embeddable storage core of sluice: record batches, segments, indexes, partition logs,
// topics and committed offsets. No sockets live here; protocol/ uses only this module.
export {};
