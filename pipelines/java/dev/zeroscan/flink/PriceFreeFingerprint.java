package dev.zeroscan.flink;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * A listing record's fingerprint without its price: {@code sha256hex(canonical + ":" + at) +
 * "/p"}, where the canonical text is {@link ContentFingerprint}'s (every integer {@code
 * event_time} rewritten to 0) with the value of the top-level {@code price} cut out, and {@code
 * at} the canonical text's length where it was cut (in decimal: the digits after the last ":"). Two records with one such fingerprint are
 * the same record but for their event_time integers and that one price, so a scan that found
 * one of them presents no brand finds the same of the other: a price counts only against the
 * floor of a brand the listing presents (brand_signals.sources.price).
 *
 * <p>NULL (the record is compared whole, as before) unless every part of that holds exactly:
 * <ul>
 * <li>the record is well-formed UTF-8 without U+FFFD, and at most {@code maxBytes} long (the
 * contract's record limit: the scan would refuse a longer one, whatever its price);</li>
 * <li>it is a well-formed JSON object up to its end, whose last top-level {@code price} (the
 * one a parser keeps) is a money object the contract accepts, in the one plain form read here:
 * {@code {"amount": A, "currency": "XYZ"}} in either order, no other member, no escapes,
 * {@code A} of at most 12 integer and 8 fraction digits, no sign or exponent, and a currency of
 * three capital letters. Any other price (one the contract refuses included) keeps the record
 * whole, so a re-post whose price the scan would refuse still reaches its dead letter.</li>
 * </ul>
 */
public final class PriceFreeFingerprint extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private static final byte[] PRICE = "price".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] SUFFIX = "/p".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] AMOUNT = "amount".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] CURRENCY = "currency".getBytes(StandardCharsets.US_ASCII);
    private static final int MAX_INT_DIGITS = 12;
    private static final int MAX_FRACTION_DIGITS = 8;

    private transient MessageDigest sha;
    private transient byte[] stack;

    public @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData text, Integer maxBytes) {
        if (text == null || maxBytes == null) {
            return null;
        }
        byte[] b = text.toBytes();
        if (b.length > maxBytes || ContentFingerprint.codePoints(b) < 0) {
            return null;
        }
        if (stack == null) {
            stack = new byte[ListingId.MAX_DEPTH + 1];
            sha = ContentFingerprint.newSha();
        }
        long span = ListingId.lastMember(b, PRICE, stack);
        if (span < 0) {
            return null;
        }
        int from = (int) (span >>> 32);
        int end = (int) span;
        if (!plainMoney(b, from, end)) {
            return null;
        }
        // The canonical text in two parts, either side of the cut, fed to the digest as they are
        // read. No event_time match lies in the price (two members, neither of them event_time)
        // or across its ends (before it stands `"price":`, after it a `,` or `}`).
        MessageDigest md = sha;
        md.reset();
        long at = ContentFingerprint.canonical(md, b, 0, from) & 0xffffffffL;
        ContentFingerprint.canonical(md, b, end, b.length);
        md.update((byte) ':');
        md.update(Long.toString(at).getBytes(StandardCharsets.US_ASCII));
        byte[] out = ContentFingerprint.hex(md.digest(), SUFFIX.length);
        System.arraycopy(SUFFIX, 0, out, 64, SUFFIX.length);
        return StringData.fromBytes(out);
    }

    /** b[from, to) is {"amount": A, "currency": "XYZ"} (either order) in the plain form above. */
    static boolean plainMoney(byte[] b, int from, int to) {
        if (to - from < 2 || b[from] != '{' || b[to - 1] != '}') {
            return false;
        }
        int i = ListingId.ws(b, from + 1);
        boolean amount = false;
        boolean currency = false;
        for (int member = 0; member < 2; member++) {
            if (member == 1) {
                if (i >= to || b[i] != ',') {
                    return false;
                }
                i = ListingId.ws(b, i + 1);
            }
            int name = word(b, i, to);
            if (name < 0) {
                return false;
            }
            boolean isAmount = ListingId.isKey(b, i + 1, name - 1, AMOUNT);
            boolean isCurrency = ListingId.isKey(b, i + 1, name - 1, CURRENCY);
            if ((!isAmount && !isCurrency) || (isAmount && amount) || (isCurrency && currency)) {
                return false;
            }
            i = ListingId.ws(b, name);
            if (i >= to || b[i] != ':') {
                return false;
            }
            i = ListingId.ws(b, i + 1);
            int end = isAmount ? number(b, i, to) : code(b, i, to);
            if (end < 0) {
                return false;
            }
            amount |= isAmount;
            currency |= isCurrency;
            i = ListingId.ws(b, end);
        }
        return i == to - 1;
    }

    /** After a quoted run of lower-case letters at i, or -1. */
    private static int word(byte[] b, int i, int to) {
        if (i >= to || b[i] != '"') {
            return -1;
        }
        for (int j = i + 1; j < to; j++) {
            if (b[j] == '"') {
                return j + 1;
            }
            if (b[j] < 'a' || b[j] > 'z') {
                return -1;
            }
        }
        return -1;
    }

    /** After (0|[1-9][0-9]{0,11})(\.[0-9]{1,8})? at i, followed by a non-digit; or -1. */
    private static int number(byte[] b, int i, int to) {
        int j = i;
        while (j < to && b[j] >= '0' && b[j] <= '9') {
            j++;
        }
        int digits = j - i;
        if (digits == 0 || digits > MAX_INT_DIGITS || (b[i] == '0' && digits > 1)) {
            return -1;
        }
        if (j < to && b[j] == '.') {
            int d = ++j;
            while (j < to && b[j] >= '0' && b[j] <= '9') {
                j++;
            }
            if (j == d || j - d > MAX_FRACTION_DIGITS) {
                return -1;
            }
        }
        return j < to && (b[j] == 'e' || b[j] == 'E') ? -1 : j;
    }

    /** After "[A-Z]{3}" at i, or -1. */
    private static int code(byte[] b, int i, int to) {
        if (i + 5 > to || b[i] != '"' || b[i + 4] != '"') {
            return -1;
        }
        for (int k = 1; k <= 3; k++) {
            if (b[i + k] < 'A' || b[i + k] > 'Z') {
                return -1;
            }
        }
        return i + 5;
    }
}
