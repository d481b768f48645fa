// TOTP codes (RFC 6238) with node:crypto, the way an authenticator app computes them.
// The client never needs this in production (the user's app shows the code); the example
// flow and the tests use it to play the user's part.
import { createHmac } from "node:crypto";

/** The HMAC hash function of a TOTP, as in `TotpAlgorithm` of the proto. */
export type TotpHash = "sha1" | "sha256" | "sha512";

/** The parameters of a TOTP; the defaults are those of `CreateTotp` (SHA1, 6 digits, 30 s). */
export interface TotpOptions {
  /** The HMAC hash function; default "sha1". */
  hash?: TotpHash;
  /** The number of digits of the code: 6 or 8; default 6. */
  digits?: number;
  /** The length of one time step in seconds; default 30. */
  periodSeconds?: number;
}

const BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** Decodes RFC 4648 base32 (case-insensitive, padding and spaces optional) into bytes. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=]/g, "").toUpperCase();
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of clean) {
    const value = BASE32_ALPHABET.indexOf(char);
    if (value < 0) {
      throw new Error(`invalid base32 character ${JSON.stringify(char)}`);
    }
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((buffer >>> bits) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/** The time step (RFC 6238 `T`) that contains `timeMs`, a Unix time in milliseconds. */
export function timeStep(timeMs: number, periodSeconds = 30): number {
  return Math.floor(timeMs / 1000 / periodSeconds);
}

/** The HOTP code (RFC 4226) of `counter` for a base32 `secret`. */
export function hotp(secret: string, counter: number, options: TotpOptions = {}): string {
  const { hash = "sha1", digits = 6 } = options;
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(hash, base32Decode(secret)).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f; // dynamic truncation, RFC 4226 section 5.3
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, "0");
}

/**
 * The TOTP code of a base32 `secret` at `timeMs` (default: now), or at time step
 * `timeStep(timeMs) + stepOffset` when `stepOffset` is given (for example +1 for the
 * next step's code).
 */
export function totp(
  secret: string,
  options: TotpOptions & { timeMs?: number; stepOffset?: number } = {},
): string {
  const { timeMs = Date.now(), stepOffset = 0, periodSeconds = 30 } = options;
  return hotp(secret, timeStep(timeMs, periodSeconds) + stepOffset, options);
}
