// CRC-32C (Castagnoli) with the SSE 4.2 `crc32` instruction, for x86-64. Bun compiles this file
// at load with its built-in C compiler (`cc` of `bun:ffi`, TinyCC); crc32c.ts loads it, checks
// it against the portable implementation, and uses it in place of the Node-API addon.
//
// Why a file of its own: the instruction has a latency of 3 cycles and a throughput of one per
// cycle, so one running CRC uses a third of it. Long inputs are cut into strides of three
// blocks whose CRCs run side by side in one loop, then are joined: the CRC of A followed by B
// is CRC(A) advanced over |B| zero bytes, xor CRC(B) started from zero. Advancing over one
// block's zeros is linear in the CRC, so it is four table lookups (shift_table, built once).
//
//   stride:  [ block 0 : c0 ][ block 1 : c1 ][ block 2 : c2 ]   c0 = shift(shift(c0)^c1)^c2
//
// TinyCC's assembler does not know `crc32`, so the instructions are written as bytes, with
// fixed registers (c0 in rax, c1 in rdx, c2 in rbx, each source word in rcx):
//   f2 48 0f 38 f1 c1   crc32q %rcx, %rax      f2 48 0f 38 f1 d9   crc32q %rcx, %rbx
//   f2 48 0f 38 f1 d1   crc32q %rcx, %rdx      f2 0f 38 f0 c1      crc32b %cl, %eax

#include <stdint.h>

#define BLOCK_BYTES 4096
// The loop below addresses blocks 1 and 2 at 4096 and 8192: change those with this.
_Static_assert(BLOCK_BYTES == 4096, "the stride loop's displacements are 1 and 2 blocks");

static uint32_t shift_table[4][256];

static uint64_t crc_word(uint64_t crc, uint64_t word) {
  __asm__(".byte 0xf2,0x48,0x0f,0x38,0xf1,0xc1" : "+a"(crc) : "c"(word));
  return crc;
}

static uint64_t crc_byte(uint64_t crc, uint64_t byte) {
  __asm__(".byte 0xf2,0x0f,0x38,0xf0,0xc1" : "+a"(crc) : "c"(byte));
  return crc;
}

/** 1 when the processor has SSE 4.2 (CPUID leaf 1, ECX bit 20): the instruction exists. */
int sluice_crc32c_supported(void) {
  uint32_t a = 1, b = 0, c = 0, d = 0;
  __asm__ volatile(".byte 0x0f,0xa2" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return (c >> 20) & 1;
}

/** Builds shift_table: the raw CRC register advanced over BLOCK_BYTES zero bytes. */
void sluice_crc32c_init(void) {
  for (int k = 0; k < 4; k++) {
    for (int b = 0; b < 256; b++) {
      uint64_t crc = (uint64_t)b << (8 * k);
      for (int i = 0; i < BLOCK_BYTES / 8; i++) crc = crc_word(crc, 0);
      shift_table[k][b] = (uint32_t)crc;
    }
  }
}

static uint64_t shift(uint64_t crc) {
  return shift_table[0][crc & 0xff] ^ shift_table[1][(crc >> 8) & 0xff] ^
         shift_table[2][(crc >> 16) & 0xff] ^ shift_table[3][(crc >> 24) & 0xff];
}

/** The CRC-32C of `n` bytes at `p`, continuing `crc` (the CRC of the bytes before them). */
uint32_t sluice_crc32c(const uint8_t *p, uint64_t n, uint32_t crc) {
  uint64_t c0 = ~crc & 0xffffffffu;
  while (n >= 3 * BLOCK_BYTES) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    uint64_t words = BLOCK_BYTES / 8;
    const uint8_t *at = p;
    __asm__ volatile(
        "1:\n"
        "movq (%%rsi), %%rcx\n"
        ".byte 0xf2,0x48,0x0f,0x38,0xf1,0xc1\n"
        "movq 4096(%%rsi), %%rcx\n"
        ".byte 0xf2,0x48,0x0f,0x38,0xf1,0xd1\n"
        "movq 8192(%%rsi), %%rcx\n"
        ".byte 0xf2,0x48,0x0f,0x38,0xf1,0xd9\n"
        "addq $8, %%rsi\n"
        "decq %%rdi\n"
        "jnz 1b\n"
        : "+a"(c0), "+d"(c1), "+b"(c2), "+S"(at), "+D"(words)
        :
        : "rcx", "cc", "memory");
    c0 = shift(c0) ^ c1;
    c0 = shift(c0) ^ c2;
    p += 3 * BLOCK_BYTES;
    n -= 3 * BLOCK_BYTES;
  }
  while (n >= 8) {
    c0 = crc_word(c0, *(const uint64_t *)p);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c0 = crc_byte(c0, *p);
    p++;
    n--;
  }
  return ~(uint32_t)c0;
}
