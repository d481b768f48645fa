// The totpd flow as a Node backend runs it: enroll a user, activate with the code from the
// user's authenticator app, then verify a code at a later login.
//
//   TOTPD_ADDRESS=127.0.0.1:50051 npm run example
//
// The user's app is played by totp() from src/totp.ts.
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createTotpClient, errorReason } from "../src/client.js";
import { totp } from "../src/totp.js";

const address = process.env["TOTPD_ADDRESS"] ?? "127.0.0.1:50051";
const client = createTotpClient(address);
const userId = `example-${randomUUID()}`;

// 1. Enrollment: show the QR code (created.qrCode.dataUri) or the secret, and the
//    recovery codes, to the user once. Store none of them.
const created = await client.createTotp({ userId, issuer: "Example" });
console.log(`created ${created.totpId} for ${userId}: ${created.otpauthUri}`);

// 2. The user types the code their app shows; that activates the TOTP.
const now = Date.now();
await client.activateTotp({ userId, totpId: created.totpId, code: totp(created.secret, { timeMs: now }) });
console.log("activated");

// 3. A later login. The activation used up the current time step, so use the next one's code.
const verified = await client.verifyTotp({ userId, code: totp(created.secret, { timeMs: now, stepOffset: 1 }) });
console.log(`verified by ${verified.totpId} (time step offset ${verified.timeStepOffset})`);

// 4. Errors: branch on the ErrorInfo reason, never on the message.
try {
  await client.verifyTotp({ userId, code: "000000" });
} catch (err) {
  const code = err instanceof ConnectError ? Code[err.code] : "?";
  console.log(`a wrong code is refused: ${code} ${errorReason(err)}`);
}

await client.deleteTotp({ userId });
console.log("deleted");
