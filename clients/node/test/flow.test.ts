// The example flow against a live totpd server at TOTPD_ADDRESS (host:port); fails, never
// skips, when it is unset. Run with `TOTPD_ADDRESS=127.0.0.1:50051 npm test`.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import {
  badRequest,
  Code,
  ConnectError,
  createTotpClient,
  ErrorInfoSchema,
  errorReason,
  TotpState,
  type TotpClient,
} from "../src/client.js";
import { totp } from "../src/totp.js";

const address = process.env["TOTPD_ADDRESS"];

/** Awaits `call`, asserting that it fails with `code` and a totpd ErrorInfo of `reason`. */
async function assertTotpdError(call: Promise<unknown>, code: Code, reason: string): Promise<ConnectError> {
  const err = await call.then(
    () => assert.fail(`expected ${Code[code]} (${reason}), but the call succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  assert.equal(Code[err.code], Code[code], `status code of: ${err.message}`);
  // Exactly one ErrorInfo, of domain "totpd", and errorReason() reads it.
  const infos = err.findDetails(ErrorInfoSchema);
  assert.deepEqual(
    infos.map((info) => [info.domain, info.reason]),
    [["totpd", reason]],
  );
  assert.equal(errorReason(err), reason);
  return err;
}

let cached: TotpClient | undefined;

/** The client of the server at TOTPD_ADDRESS; each test fails (not skips) without it. */
function totpd(): TotpClient {
  assert.ok(address, "TOTPD_ADDRESS must name a running totpd server (host:port)");
  cached ??= createTotpClient(address);
  return cached;
}

describe("totpd client flow", () => {
  it("creates, activates and verifies a TOTP", async () => {
    const client = totpd();
    const userId = `node-${randomUUID()}`;

    const created = await client.createTotp({ userId, issuer: "Example" });
    assert.equal(created.userId, userId);
    assert.match(created.secret, /^[A-Z2-7]{32}$/);
    assert.match(created.otpauthUri, /^otpauth:\/\/totp\//);
    assert.equal(created.recoveryCodes.length, 10);
    assert.equal(created.totp?.state, TotpState.PENDING);
    assert.equal(created.qrCode?.mimeType, "image/png");

    // The user's app shows the current code; activation uses up its time step.
    const now = Date.now();
    const activated = await client.activateTotp({
      userId,
      totpId: created.totpId,
      code: totp(created.secret, { timeMs: now }),
    });
    assert.equal(activated.totp?.totpId, created.totpId);
    assert.equal(activated.totp?.state, TotpState.ACTIVE);
    assert.equal(activated.replacedTotpId, "");

    // A later login: the next step's code (the server accepts one step of drift).
    const nextCode = totp(created.secret, { timeMs: now, stepOffset: 1 });
    const verified = await client.verifyTotp({ userId, code: nextCode });
    assert.equal(verified.totpId, created.totpId);
    // +1 while the server is still in the activation's step, 0 if it has moved on since.
    assert.ok([0, 1].includes(verified.timeStepOffset), `offset ${verified.timeStepOffset}`);

    // Each accepted code is used up.
    await assertTotpdError(client.verifyTotp({ userId, code: nextCode }), Code.InvalidArgument, "INVALID_CODE");

    const state = await client.getTotp({ userId });
    assert.equal(state.activeTotp?.totpId, created.totpId);
    assert.equal(state.recoveryCodesRemaining, 10);

    const deleted = await client.deleteTotp({ userId });
    assert.equal(deleted.deleted, true);
  });

  it("rejects a malformed code with INVALID_REQUEST and names the field", async () => {
    const client = totpd();
    const userId = `node-${randomUUID()}`;
    const created = await client.createTotp({ userId });
    const err = await assertTotpdError(
      client.activateTotp({ userId, totpId: created.totpId, code: "12ab" }),
      Code.InvalidArgument,
      "INVALID_REQUEST",
    );
    const fields = badRequest(err)?.fieldViolations.map((v) => v.field);
    assert.deepEqual(fields, ["code"]);
    await client.deleteTotp({ userId, totpId: created.totpId });
  });

  it("answers TOTP_NOT_FOUND for a user without a TOTP", async () => {
    await assertTotpdError(
      totpd().verifyTotp({ userId: `node-unknown-${randomUUID()}`, code: "123456" }),
      Code.NotFound,
      "TOTP_NOT_FOUND",
    );
  });
});
