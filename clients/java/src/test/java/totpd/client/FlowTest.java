package totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import totpd.v1.TotpServiceGrpc.TotpServiceBlockingStub;
import totpd.v1.TotpServiceOuterClass.ActivateTotpRequest;
import totpd.v1.TotpServiceOuterClass.ActivateTotpResponse;
import totpd.v1.TotpServiceOuterClass.CreateTotpRequest;
import totpd.v1.TotpServiceOuterClass.CreateTotpResponse;
import totpd.v1.TotpServiceOuterClass.DeleteTotpRequest;
import totpd.v1.TotpServiceOuterClass.TotpState;
import totpd.v1.TotpServiceOuterClass.VerifyTotpRequest;
import totpd.v1.TotpServiceOuterClass.VerifyTotpResponse;

/**
 * The enrollment flow and two error cases against a live totpd at {@code TOTPD_ADDRESS}
 * ({@code host:port}, plaintext). Fails, rather than skips, when the variable is not set.
 */
class FlowTest {
  private static TotpdClient totpd;

  @BeforeAll
  static void connect() {
    String address = System.getenv("TOTPD_ADDRESS");
    if (address == null || address.isBlank()) {
      fail("TOTPD_ADDRESS is not set: start totpd and export TOTPD_ADDRESS=host:port");
    }
    totpd = TotpdClient.insecure(address);
  }

  @AfterAll
  static void disconnect() throws InterruptedException {
    if (totpd != null) {
      totpd.close();
    }
  }

  private static String newUserId() {
    return "java-flow-" + UUID.randomUUID();
  }

  @Test
  void createActivateVerify() {
    TotpServiceBlockingStub stub = totpd.stub();
    String userId = newUserId();

    CreateTotpResponse created =
        stub.createTotp(CreateTotpRequest.newBuilder().setUserId(userId).build());
    assertEquals(32, created.getSecret().length());
    assertTrue(created.getOtpauthUri().startsWith("otpauth://totp/"));
    assertEquals(10, created.getRecoveryCodesCount());
    assertEquals(TotpState.TOTP_STATE_PENDING, created.getTotp().getState());

    // Play the user's authenticator app: the code of the current 30-second step.
    long step = Totp.currentStep();
    ActivateTotpResponse activated =
        stub.activateTotp(
            ActivateTotpRequest.newBuilder()
                .setUserId(userId)
                .setTotpId(created.getTotpId())
                .setCode(Totp.code(created.getSecret(), step))
                .build());
    assertEquals(TotpState.TOTP_STATE_ACTIVE, activated.getTotp().getState());
    assertEquals(created.getTotpId(), activated.getTotp().getTotpId());
    assertEquals("", activated.getReplacedTotpId());

    // Activation used up `step`; the next step's code is inside the server's +-1 step window.
    VerifyTotpResponse verified =
        stub.verifyTotp(
            VerifyTotpRequest.newBuilder()
                .setUserId(userId)
                .setCode(Totp.code(created.getSecret(), step + 1))
                .build());
    assertEquals(created.getTotpId(), verified.getTotpId());
    assertTrue(
        Math.abs(verified.getTimeStepOffset()) <= 1,
        "time_step_offset " + verified.getTimeStepOffset());

    assertTrue(stub.deleteTotp(DeleteTotpRequest.newBuilder().setUserId(userId).build()).getDeleted());
  }

  @Test
  void activateWithMalformedCodeIsInvalidRequest() {
    String userId = newUserId();
    CreateTotpResponse created =
        totpd.stub().createTotp(CreateTotpRequest.newBuilder().setUserId(userId).build());

    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                totpd
                    .stub()
                    .activateTotp(
                        ActivateTotpRequest.newBuilder()
                            .setUserId(userId)
                            .setTotpId(created.getTotpId())
                            .setCode("12ab56")
                            .build()));

    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertEquals("INVALID_REQUEST", TotpdClient.errorReason(e));
    ErrorInfo info = TotpdClient.errorInfo(e).orElseThrow();
    assertEquals(TotpdClient.ERROR_DOMAIN, info.getDomain());
    assertTrue(badRequestFields(e).contains("code"), "BadRequest names the field `code`");

    // The enrollment is still pending: delete it by id (no id means the active TOTP).
    DeleteTotpRequest delete =
        DeleteTotpRequest.newBuilder().setUserId(userId).setTotpId(created.getTotpId()).build();
    assertTrue(totpd.stub().deleteTotp(delete).getDeleted());
  }

  @Test
  void verifyForUnknownUserIsNotFound() {
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                totpd
                    .stub()
                    .verifyTotp(
                        VerifyTotpRequest.newBuilder()
                            .setUserId(newUserId())
                            .setCode("123456")
                            .build()));

    assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
    assertEquals("TOTP_NOT_FOUND", TotpdClient.errorReason(e));
    assertEquals(TotpdClient.ERROR_DOMAIN, TotpdClient.errorInfo(e).orElseThrow().getDomain());
  }

  /** The field names of the error's {@code google.rpc.BadRequest} detail. */
  private static List<String> badRequestFields(StatusRuntimeException e) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    assertNotNull(status, "the error carries google.rpc.Status details");
    List<String> fields = new ArrayList<>();
    for (Any detail : status.getDetailsList()) {
      if (detail.is(BadRequest.class)) {
        try {
          for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
            fields.add(v.getField());
          }
        } catch (InvalidProtocolBufferException ex) {
          fail(ex);
        }
      }
    }
    return fields;
  }
}
