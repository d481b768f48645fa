package totpd.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The code helper against the test vectors of RFC 6238 appendix B and RFC 4226 appendix D. */
class TotpTest {
  private static final String SEED20 = "12345678901234567890";
  private static final String SEED32 = "12345678901234567890123456789012";
  private static final String SEED64 = "1234567890".repeat(6) + "1234";

  @ParameterizedTest
  @CsvSource({
    "59, HmacSHA1, 94287082",
    "59, HmacSHA256, 46119246",
    "59, HmacSHA512, 90693936",
    "1111111109, HmacSHA1, 07081804",
    "1111111111, HmacSHA256, 67062674",
    "1234567890, HmacSHA512, 93441116",
    "2000000000, HmacSHA1, 69279037",
    "20000000000, HmacSHA1, 65353130",
  })
  void rfc6238Vectors(long unixSeconds, String algorithm, String expected) {
    String seed =
        algorithm.equals("HmacSHA1") ? SEED20 : algorithm.equals("HmacSHA256") ? SEED32 : SEED64;
    long step = Totp.step(Instant.ofEpochSecond(unixSeconds), 30);
    assertEquals(
        expected, Totp.code(seed.getBytes(StandardCharsets.US_ASCII), step, 8, algorithm));
  }

  @Test
  void sixDigitsFromBase32Secret() {
    // RFC 4226 appendix D: counters 0 and 1 of the same seed; the secret as totpd shows it.
    String secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assertEquals("755224", Totp.code(secret, 0));
    assertEquals("287082", Totp.code(secret, 1));
  }

  @Test
  void base32Decode() {
    assertArrayEquals(
        SEED20.getBytes(StandardCharsets.US_ASCII),
        Totp.base32Decode("gezdgnbvgy3tqojqgezdgnbvgy3tqojq"));
    assertArrayEquals("foobar".getBytes(StandardCharsets.US_ASCII), Totp.base32Decode("MZXW6YTBOI======"));
  }
}
