// Deterministic pseudo-random test data: AES-128-CTR keystream under a key
// derived from a seed string. Same seed, same bytes, on every machine.
import { createCipheriv, createHash } from 'node:crypto';

export function deterministicBytes(seed, length) {
  const key = createHash('sha256').update(`depot-interop:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}
