// A typed client of totpd.v1.TotpService over gRPC (HTTP/2), built on Connect for Node.
//
//   const client = createTotpClient("127.0.0.1:50051");
//   try {
//     await client.verifyTotp({ userId, code });
//   } catch (err) {
//     if (errorReason(err) === "INVALID_CODE") { ... }
//   }
//
// Branch on errorReason() (the stable `google.rpc.ErrorInfo.reason` of every totpd
// error), never on the message text.
import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
  type BadRequest,
  type ErrorInfo,
  type RetryInfo,
} from "./gen/google/rpc/error_details_pb.js";
import { TotpService } from "./gen/totpd/v1/totp_service_pb.js";

export { Code, ConnectError } from "@connectrpc/connect";
export * from "./gen/totpd/v1/totp_service_pb.js";
export { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema };
export type { BadRequest, ErrorInfo, RetryInfo };

/** The `domain` of every ErrorInfo that totpd returns. */
export const ERROR_DOMAIN = "totpd";

/** The deadline of each call unless the call passes its own `timeoutMs`. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/** A client of totpd.v1.TotpService: one async method per RPC, e.g. `createTotp`. */
export type TotpClient = Client<typeof TotpService>;

/** Options of createTotpClient(). */
export interface TotpClientOptions {
  /** The deadline of each call in milliseconds; default DEFAULT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Interceptors for every call, e.g. to add auth metadata. */
  interceptors?: Interceptor[];
}

/**
 * Creates a client of the totpd server at `address`: `host:port` (plaintext, as the
 * server listens in development) or a full `http://` / `https://` URL. Calls share
 * one HTTP/2 connection, opened on the first call and closed when idle.
 */
export function createTotpClient(address: string, options: TotpClientOptions = {}): TotpClient {
  const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
  const transport = createGrpcTransport({
    baseUrl,
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    interceptors: options.interceptors ?? [],
  });
  return createClient(TotpService, transport);
}

/** The totpd ErrorInfo detail of an error thrown by a call, if it has one. */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  return ConnectError.from(err)
    .findDetails(ErrorInfoSchema)
    .find((info) => info.domain === ERROR_DOMAIN);
}

/**
 * The stable reason of an error thrown by a call (`ErrorInfo.reason` with domain
 * "totpd", e.g. "INVALID_CODE" or "TOTP_NOT_FOUND"), or undefined if the error did not
 * come from totpd (a network failure, an exceeded deadline, a proxy's error).
 */
export function errorReason(err: unknown): string | undefined {
  return errorInfo(err)?.reason;
}

/** The BadRequest detail (one violation per offending field) of an INVALID_ARGUMENT error. */
export function badRequest(err: unknown): BadRequest | undefined {
  return ConnectError.from(err).findDetails(BadRequestSchema)[0];
}

/** The RetryInfo detail (how long to wait) of a RESOURCE_EXHAUSTED error. */
export function retryInfo(err: unknown): RetryInfo | undefined {
  return ConnectError.from(err).findDetails(RetryInfoSchema)[0];
}
