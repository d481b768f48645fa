package totpd.client;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.time.Instant;
import java.util.Locale;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * TOTP codes (RFC 6238) as an authenticator app computes them, with the JDK's HMAC.
 *
 * <p>totpd's defaults are HMAC-SHA1, 6 digits and 30-second steps; the secret is the base32
 * text of {@code CreateTotpResponse.secret}. A backend never needs this in production (the
 * user's app computes codes); tests and tools that play the user's part do.
 */
public final class Totp {
  /** The default time step of totpd, in seconds. */
  public static final int DEFAULT_PERIOD_SECONDS = 30;

  /** The default number of digits of a code. */
  public static final int DEFAULT_DIGITS = 6;

  private static final String BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

  private Totp() {}

  /** The time step (RFC 6238 "T") that {@code time} falls in, for steps of {@code periodSeconds}. */
  public static long step(Instant time, int periodSeconds) {
    return Math.floorDiv(time.getEpochSecond(), periodSeconds);
  }

  /** The current time step for totpd's default 30-second period. */
  public static long currentStep() {
    return step(Instant.now(), DEFAULT_PERIOD_SECONDS);
  }

  /** The 6-digit HMAC-SHA1 code of a base32 secret for one time step. */
  public static String code(String base32Secret, long step) {
    return code(base32Decode(base32Secret), step, DEFAULT_DIGITS, "HmacSHA1");
  }

  /**
   * The code of {@code key} for one time step (RFC 4226 section 5.3 with RFC 6238's counter).
   *
   * @param macAlgorithm a JCA name: {@code HmacSHA1}, {@code HmacSHA256} or {@code HmacSHA512}
   */
  public static String code(byte[] key, long step, int digits, String macAlgorithm) {
    if (digits != 6 && digits != 8) {
      throw new IllegalArgumentException("digits must be 6 or 8");
    }
    byte[] hash;
    try {
      Mac mac = Mac.getInstance(macAlgorithm);
      mac.init(new SecretKeySpec(key, macAlgorithm));
      hash = mac.doFinal(ByteBuffer.allocate(Long.BYTES).putLong(step).array());
    } catch (GeneralSecurityException e) {
      throw new IllegalArgumentException("cannot compute " + macAlgorithm, e);
    }
    int offset = hash[hash.length - 1] & 0x0f;
    int binary = ByteBuffer.wrap(hash, offset, Integer.BYTES).getInt() & 0x7fffffff;
    int modulus = digits == 6 ? 1_000_000 : 100_000_000;
    return String.format(Locale.ROOT, "%0" + digits + "d", binary % modulus);
  }

  /** Decodes RFC 4648 base32, upper or lower case, with or without '=' padding. */
  public static byte[] base32Decode(String text) {
    String clean = text.replace("=", "").toUpperCase(Locale.ROOT);
    ByteBuffer out = ByteBuffer.allocate(clean.length() * 5 / 8);
    int buffer = 0;
    int bits = 0;
    for (char c : clean.toCharArray()) {
      int value = BASE32.indexOf(c);
      if (value < 0) {
        throw new IllegalArgumentException("not a base32 character: " + c);
      }
      buffer = (buffer << 5) | value;
      bits += 5;
      if (bits >= 8) {
        bits -= 8;
        out.put((byte) (buffer >> bits));
        buffer &= (1 << bits) - 1;
      }
    }
    return out.array();
  }
}
