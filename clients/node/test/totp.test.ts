// The TOTP helper against the test vectors of RFC 6238 appendix B (no server needed).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { base32Decode, totp, type TotpHash } from "../src/totp.js";

// The RFC's ASCII seeds "1234567890..." of 20, 32 and 64 bytes, in base32.
const SECRETS: Record<TotpHash, string> = {
  sha1: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
  sha256: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA",
  sha512:
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA",
};

// [Unix time in seconds, SHA1, SHA256, SHA512], 8 digits, 30 s steps.
const VECTORS: [number, string, string, string][] = [
  [59, "94287082", "46119246", "90693936"],
  [1111111109, "07081804", "68084774", "25091201"],
  [1111111111, "14050471", "67062674", "99943326"],
  [1234567890, "89005924", "91819424", "93441116"],
  [2000000000, "69279037", "90698825", "38618901"],
  [20000000000, "65353130", "77737706", "47863826"],
];

describe("totp", () => {
  it("matches the RFC 6238 test vectors", () => {
    for (const [seconds, ...codes] of VECTORS) {
      (["sha1", "sha256", "sha512"] as const).forEach((hash, i) => {
        assert.equal(totp(SECRETS[hash], { hash, digits: 8, timeMs: seconds * 1000 }), codes[i], `${hash} at ${seconds}`);
      });
    }
  });

  it("defaults to 6 digits and steps by stepOffset", () => {
    assert.equal(totp(SECRETS.sha1, { timeMs: 59_000 }), "287082");
    assert.equal(totp(SECRETS.sha1, { timeMs: 29_000, stepOffset: 1 }), "287082");
  });

  it("decodes lower-case, padded base32 and rejects other characters", () => {
    assert.deepEqual(base32Decode("gezdgnbv gy======"), Buffer.from("123456"));
    assert.throws(() => base32Decode("GEZ1"), /invalid base32/);
  });
});
