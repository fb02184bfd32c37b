package dev.zeroscan.flink;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The unchanged-content fingerprint of a listing record, in one pass over its UTF-8 bytes:
 * {@code sha256hex(canonical) + "/" + code points}, where the canonical text is the record with
 * every {@code "event_time"<ws>:<ws><integer>} rewritten to {@code "event_time":0}; NULL when
 * the record is not fingerprinted (then it is always scanned).
 *
 * <p>It computes exactly what the SQL expression before it did
 * ({@code CONCAT(SHA256(REGEXP_REPLACE(body, RE, '"event_time":0')), '/', CHAR_LENGTH(body))}
 * under {@code REGEXP(body, RE) AND NOT REGEXP(body, '\uFFFD')}, with RE
 * {@code "event_time"[ \t\n\r]*:[ \t\n\r]*(0|[1-9][0-9]{0,17})(?=[ \t\n\r]*[,}])}), so state
 * written by one is read by the other, without its cost: Flink 2.2 evaluates each of those
 * calls anew, decodes the record to a Java string for every regular expression, and compiles
 * REGEXP_REPLACE's pattern on every call.
 *
 * <p>NULL (not fingerprinted) for: a record without such an event_time; one that is not
 * valid UTF-8 (the bytes are read as they came from Kafka; a cast to a Java string would map
 * each invalid sequence to U+FFFD, so records differing there would share a canonical text);
 * one holding U+FFFD itself. Every pattern byte is ASCII and no byte of a multi-byte UTF-8
 * sequence is, so matching the bytes matches the text.
 */
public final class ContentFingerprint extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private static final byte[] KEY = "\"event_time\"".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] CANON = "\"event_time\":0".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] HEX = "0123456789abcdef".getBytes(StandardCharsets.US_ASCII);
    /** At most 18 digits: the contract's integer event_time fits a long. */
    private static final int MAX_DIGITS = 18;

    /** Made on first use, in the task (a function instance is serialized to it). */
    private transient MessageDigest sha;

    public @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData text) {
        if (text == null) {
            return null;
        }
        byte[] b = text.toBytes();
        long chars = codePoints(b);
        if (chars < 0) {
            return null;
        }
        if (sha == null) {
            sha = newSha();
        }
        MessageDigest md = sha;
        md.reset();
        if (canonical(md, b, 0, b.length) >>> 32 == 0) {
            return null;
        }
        byte[] count = Long.toString(chars).getBytes(StandardCharsets.US_ASCII);
        byte[] out = hex(md.digest(), 1 + count.length);
        out[64] = '/';
        System.arraycopy(count, 0, out, 65, count.length);
        return StringData.fromBytes(out);
    }

    /**
     * Feeds {@code md} the canonical text of b[from, to): each integer event_time rewritten to
     * {@code "event_time":0}, matched left to right as the regular expression engine finds them
     * (a failed attempt at one "event_time" key moves on to the next occurrence of the key), a
     * match wholly inside the range. Returns {@code matches << 32 | bytes fed}.
     */
    static long canonical(MessageDigest md, byte[] b, int from, int to) {
        int pos = from;
        long matches = 0;
        long fed = 0;
        for (int at = indexOf(b, KEY, from); at >= 0 && at < to; at = indexOf(b, KEY, at + 1)) {
            int end = matchEnd(b, at + KEY.length);
            if (end < 0 || end > to) {
                continue;
            }
            md.update(b, pos, at - pos);
            md.update(CANON);
            fed += at - pos + CANON.length;
            pos = end;
            matches++;
            at = end - 1;
        }
        md.update(b, pos, to - pos);
        return matches << 32 | (fed + to - pos);
    }

    /** The digest in lower-case hex, with {@code extra} bytes left at the end for the caller. */
    static byte[] hex(byte[] digest, int extra) {
        byte[] out = new byte[digest.length * 2 + extra];
        for (int i = 0; i < digest.length; i++) {
            out[2 * i] = HEX[(digest[i] >> 4) & 0xf];
            out[2 * i + 1] = HEX[digest[i] & 0xf];
        }
        return out;
    }

    /** After the key: the end of the integer of a match, or -1 where there is no match. */
    static int matchEnd(byte[] b, int i) {
        i = skipSpace(b, i);
        if (i >= b.length || b[i] != ':') {
            return -1;
        }
        i = skipSpace(b, i + 1);
        int start = i;
        while (i < b.length && b[i] >= '0' && b[i] <= '9') {
            i++;
        }
        int digits = i - start;
        // (0|[1-9][0-9]{0,17}) followed by a non-digit: a longer run cannot match at any
        // length (the look-ahead would see a digit).
        if (digits == 0 || digits > MAX_DIGITS || (b[start] == '0' && digits > 1)) {
            return -1;
        }
        int j = skipSpace(b, i);
        return j < b.length && (b[j] == ',' || b[j] == '}') ? i : -1;
    }

    private static int skipSpace(byte[] b, int i) {
        while (i < b.length && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) {
            i++;
        }
        return i;
    }

    static int indexOf(byte[] b, byte[] key, int from) {
        int last = b.length - key.length;
        outer:
        for (int i = from; i <= last; i++) {
            if (b[i] != key[0]) {
                continue;
            }
            for (int k = 1; k < key.length; k++) {
                if (b[i + k] != key[k]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    /**
     * The number of code points of well-formed UTF-8 (RFC 3629: no overlong forms, no
     * surrogates, nothing above U+10FFFF), or -1 for bytes that are not, or that hold U+FFFD.
     */
    static long codePoints(byte[] b) {
        long n = 0;
        for (int i = 0; i < b.length; n++) {
            int c = b[i] & 0xff;
            if (c < 0x80) {
                i++;
                continue;
            }
            // The sequence's length and the range of its second byte (RFC 3629, table 3-7).
            int len;
            int lo = 0x80;
            int hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
            } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                lo = c == 0xe0 ? 0xa0 : lo;
                hi = c == 0xed ? 0x9f : hi;
            } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                lo = c == 0xf0 ? 0x90 : lo;
                hi = c == 0xf4 ? 0x8f : hi;
            } else {
                return -1;
            }
            if (i + len > b.length) {
                return -1;
            }
            int c1 = b[i + 1] & 0xff;
            if (c1 < lo || c1 > hi) {
                return -1;
            }
            for (int k = 2; k < len; k++) {
                if ((b[i + k] & 0xc0) != 0x80) {
                    return -1;
                }
            }
            if (c == 0xef && c1 == 0xbf && (b[i + 2] & 0xff) == 0xbd) {
                return -1;  // U+FFFD
            }
            i += len;
        }
        return n;
    }

    static MessageDigest newSha() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
