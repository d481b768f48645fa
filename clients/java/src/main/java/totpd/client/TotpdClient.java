package totpd.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import com.google.rpc.Status;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import totpd.v1.TotpServiceGrpc;

/**
 * A channel to totpd and a blocking stub on it whose calls get a default deadline.
 *
 * <p>Errors are {@link StatusRuntimeException}s: branch on {@link #errorReason} (the stable
 * {@code google.rpc.ErrorInfo} reason, such as {@code INVALID_CODE}), never on the message.
 *
 * <pre>{@code
 * try (TotpdClient totpd = TotpdClient.insecure("127.0.0.1:50051")) {
 *   totpd.stub().verifyTotp(VerifyTotpRequest.newBuilder()...build());
 * } catch (StatusRuntimeException e) {
 *   if ("INVALID_CODE".equals(TotpdClient.errorReason(e))) { ... }
 * }
 * }</pre>
 */
public final class TotpdClient implements AutoCloseable {
  /** The {@code ErrorInfo.domain} of every totpd error. */
  public static final String ERROR_DOMAIN = "totpd";

  /** The deadline of a call that sets none itself. */
  public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(5);

  private final ManagedChannel channel;
  private final TotpServiceGrpc.TotpServiceBlockingStub stub;

  /**
   * Wraps a channel that the caller built (for example with TLS credentials); {@link #close}
   * shuts it down.
   */
  public TotpdClient(ManagedChannel channel, Duration defaultDeadline) {
    this.channel = channel;
    Channel withDeadline = ClientInterceptors.intercept(channel, new DefaultDeadline(defaultDeadline));
    this.stub = TotpServiceGrpc.newBlockingStub(withDeadline);
  }

  /** A plaintext channel to {@code target} ({@code host:port}), as for a local or in-mesh totpd. */
  public static TotpdClient insecure(String target) {
    ManagedChannel channel =
        Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
    return new TotpdClient(channel, DEFAULT_DEADLINE);
  }

  /**
   * The blocking stub. Each call gets the default deadline unless the caller sets its own, e.g.
   * {@code stub().withDeadlineAfter(1, SECONDS)} (a deadline on a stub is fixed when it is set,
   * so set it per call, not on a stub kept for later).
   */
  public TotpServiceGrpc.TotpServiceBlockingStub stub() {
    return stub;
  }

  /** The {@code google.rpc.ErrorInfo} detail of a failed call, if it carries one. */
  public static Optional<ErrorInfo> errorInfo(StatusRuntimeException e) {
    Status status = StatusProto.fromThrowable(e);
    if (status == null) {
      return Optional.empty();
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          return Optional.of(detail.unpack(ErrorInfo.class));
        } catch (InvalidProtocolBufferException ignored) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /**
   * The {@code ErrorInfo.reason} of a failed call (for example {@code TOTP_NOT_FOUND}), or the
   * empty string if the error has no ErrorInfo (such as a deadline exceeded on the client).
   */
  public static String errorReason(StatusRuntimeException e) {
    return errorInfo(e).map(ErrorInfo::getReason).orElse("");
  }

  /** Shuts the channel down, waiting up to five seconds for calls in flight. */
  @Override
  public void close() throws InterruptedException {
    channel.shutdown();
    if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
      channel.shutdownNow();
    }
  }

  /** Gives every call without a deadline one that starts when the call does. */
  private static final class DefaultDeadline implements ClientInterceptor {
    private final long nanos;

    DefaultDeadline(Duration deadline) {
      this.nanos = deadline.toNanos();
    }

    @Override
    public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
        MethodDescriptor<ReqT, RespT> method, CallOptions options, Channel next) {
      if (options.getDeadline() == null) {
        options = options.withDeadlineAfter(nanos, TimeUnit.NANOSECONDS);
      }
      return next.newCall(method, options);
    }
  }
}
