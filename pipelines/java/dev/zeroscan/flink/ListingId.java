package dev.zeroscan.flink;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * A record's top-level {@code listing_id} string, read in one pass over its UTF-8 bytes: what
 * {@code JSON_VALUE(text, '$.listing_id')} gives for every string value, without building the
 * record's tree (Flink 2.2's JSON_VALUE parses the whole record into maps and lists through
 * JsonPath, most of the job's per-record cost where a re-post stops).
 *
 * <p>As JSON_VALUE does: the last of duplicate keys counts, keys and values are read with their
 * escapes decoded, JSON that is not well-formed up to the end of the top-level object gives NULL,
 * and so does nesting deeper than 1,000 (Jackson's limit); what follows the object is not read.
 * Unlike it: a value that is not a string (a number, an object, true) gives NULL, where
 * JSON_VALUE gives its text; such a record breaks the contract and the scan refuses it. The key
 * only groups a listing's records: the scan reads the listing_id again with its own parser and
 * refuses a record whose key differs ("listing_id reads apart"), so no reading of this function
 * can make the scan act on a record under another listing's key.
 */
public final class ListingId extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private static final byte[] KEY = "listing_id".getBytes(StandardCharsets.US_ASCII);
    /** Containers, the top-level object included (Jackson's StreamReadConstraints default). */
    static final int MAX_DEPTH = 1000;

    /** Open containers while a value is skipped; made on first use, in the task. */
    private transient byte[] stack;

    @Override
    public boolean isDeterministic() {
        return false;
    }

    public @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData text) {
        if (text == null) {
            return null;
        }
        if (stack == null) {
            stack = new byte[MAX_DEPTH + 1];
        }
        byte[] id = read(text.toBytes(), stack);
        return id == null ? null : StringData.fromBytes(id);
    }

    /** The listing_id's UTF-8 bytes, or null. */
    static byte[] read(byte[] b, byte[] stack) {
        long span = lastMember(b, KEY, stack);
        if (span < 0) {
            return null;
        }
        int from = (int) (span >>> 32);
        int end = (int) span;
        return b[from] != '"' ? null : decode(b, from + 1, end - 1);
    }

    /**
     * Where the value of the last top-level member named {@code key} lies: {@code from << 32 |
     * end} (its first byte, the byte after it), or -1 when the record is not a well-formed object
     * up to its end, or has no such member. Keys are compared with their escapes decoded.
     */
    static long lastMember(byte[] b, byte[] key, byte[] stack) {
        int n = b.length;
        int i = ws(b, 0);
        if (i >= n || b[i] != '{') {
            return -1;
        }
        i = ws(b, i + 1);
        if (i < n && b[i] == '}') {
            return -1;
        }
        long span = -1;
        while (true) {
            if (i >= n || b[i] != '"') {
                return -1;
            }
            int keyEnd = stringEnd(b, i);
            if (keyEnd < 0) {
                return -1;
            }
            boolean ours = isKey(b, i + 1, keyEnd - 1, key);
            i = ws(b, keyEnd);
            if (i >= n || b[i] != ':') {
                return -1;
            }
            i = ws(b, i + 1);
            if (i >= n) {
                return -1;
            }
            int end = skipValue(b, i, stack);
            if (end < 0) {
                return -1;
            }
            if (ours) {
                span = ((long) i << 32) | end;
            }
            i = ws(b, end);
            if (i >= n) {
                return -1;
            }
            if (b[i] == '}') {
                return span;
            }
            if (b[i] != ',') {
                return -1;
            }
            i = ws(b, i + 1);
        }
    }

    static boolean isKey(byte[] b, int from, int to, byte[] key) {
        if (to - from == key.length) {
            for (int k = 0; k < key.length; k++) {
                if (b[from + k] != key[k]) {
                    return false;
                }
            }
            return true;
        }
        for (int k = from; k < to; k++) {
            if (b[k] == '\\') {   // escaped: decode, then compare
                byte[] decoded = decode(b, from, to);
                return decoded != null && java.util.Arrays.equals(decoded, key);
            }
        }
        return false;
    }

    /** After the value at {@code i} (inside the top-level object), or -1 where it is not JSON. */
    static int skipValue(byte[] b, int i, byte[] stack) {
        byte c = b[i];
        if (c == '"') {
            return stringEnd(b, i);
        }
        if (c != '{' && c != '[') {
            return scalarEnd(b, i);
        }
        int n = b.length;
        int top = -1;
        boolean open = true;   // b[i] opens a container
        while (true) {
            if (open) {
                if (top + 3 > MAX_DEPTH) {   // the top-level object, those open, this one
                    return -1;
                }
                stack[++top] = b[i];
                i = ws(b, i + 1);
            } else {
                i = ws(b, i);
            }
            if (i >= n) {
                return -1;
            }
            if (b[i] == closer(stack[top])) {   // an empty container's end, or one after its last member
                i++;
                if (--top < 0) {
                    return i;
                }
                open = false;
                continue;
            }
            if (!open) {
                if (b[i] != ',') {
                    return -1;
                }
                i = ws(b, i + 1);
            }
            // A member: its key in an object, then its value.
            if (stack[top] == '{') {
                if (i >= n || b[i] != '"') {
                    return -1;
                }
                i = stringEnd(b, i);
                if (i < 0) {
                    return -1;
                }
                i = ws(b, i);
                if (i >= n || b[i] != ':') {
                    return -1;
                }
                i = ws(b, i + 1);
            }
            if (i >= n) {
                return -1;
            }
            if (b[i] == '{' || b[i] == '[') {
                open = true;
                continue;
            }
            i = b[i] == '"' ? stringEnd(b, i) : scalarEnd(b, i);
            if (i < 0) {
                return -1;
            }
            open = false;
        }
    }

    private static byte closer(byte open) {
        return open == '{' ? (byte) '}' : (byte) ']';
    }

    /** After the closing quote of the string at {@code i}, or -1. */
    static int stringEnd(byte[] b, int i) {
        int n = b.length;
        for (int j = i + 1; j < n; j++) {
            int c = b[j] & 0xff;
            if (c == '"') {
                return j + 1;
            }
            if (c < 0x20) {
                return -1;
            }
            if (c == '\\') {
                if (++j >= n) {
                    return -1;
                }
                int e = b[j];
                if (e == 'u') {
                    if (j + 4 >= n) {
                        return -1;
                    }
                    for (int k = 1; k <= 4; k++) {
                        if (hex(b[j + k]) < 0) {
                            return -1;
                        }
                    }
                    j += 4;
                } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r'
                        && e != 't') {
                    return -1;
                }
            }
        }
        return -1;
    }

    /** After the literal or number at {@code i}, or -1 (JSON's grammar: no leading zeros, no +). */
    static int scalarEnd(byte[] b, int i) {
        int n = b.length;
        byte c = b[i];
        if (c == 't' || c == 'f' || c == 'n') {
            String lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
            if (i + lit.length() > n) {
                return -1;
            }
            for (int k = 0; k < lit.length(); k++) {
                if (b[i + k] != lit.charAt(k)) {
                    return -1;
                }
            }
            return i + lit.length();
        }
        int j = i;
        if (j < n && b[j] == '-') {
            j++;
        }
        if (j >= n || b[j] < '0' || b[j] > '9') {
            return -1;
        }
        if (b[j] == '0') {
            j++;
        } else {
            while (j < n && b[j] >= '0' && b[j] <= '9') {
                j++;
            }
        }
        if (j < n && b[j] == '.') {
            int d = ++j;
            while (j < n && b[j] >= '0' && b[j] <= '9') {
                j++;
            }
            if (j == d) {
                return -1;
            }
        }
        if (j < n && (b[j] == 'e' || b[j] == 'E')) {
            j++;
            if (j < n && (b[j] == '+' || b[j] == '-')) {
                j++;
            }
            int d = j;
            while (j < n && b[j] >= '0' && b[j] <= '9') {
                j++;
            }
            if (j == d) {
                return -1;
            }
        }
        return j;
    }

    /** The string between quotes, escapes decoded, as UTF-8; null for a lone surrogate. */
    static byte[] decode(byte[] b, int from, int to) {
        int k = from;
        while (k < to && b[k] != '\\') {
            k++;
        }
        if (k == to) {
            return java.util.Arrays.copyOfRange(b, from, to);
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(to - from);
        out.write(b, from, k - from);
        for (int j = k; j < to; j++) {
            byte c = b[j];
            if (c != '\\') {
                out.write(c);
                continue;
            }
            byte e = b[++j];
            switch (e) {
                case 'b': out.write('\b'); break;
                case 'f': out.write('\f'); break;
                case 'n': out.write('\n'); break;
                case 'r': out.write('\r'); break;
                case 't': out.write('\t'); break;
                case 'u': {
                    int cp = u4(b, j + 1);
                    j += 4;
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (j + 6 < to && b[j + 1] == '\\' && b[j + 2] == 'u') {
                            int lo = u4(b, j + 3);
                            if (lo >= 0xdc00 && lo <= 0xdfff) {
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                j += 6;
                            } else {
                                return null;
                            }
                        } else {
                            return null;
                        }
                    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                        return null;
                    }
                    byte[] u = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8);
                    out.write(u, 0, u.length);
                    break;
                }
                default: out.write(e);   // " \ /
            }
        }
        return out.toByteArray();
    }

    private static int u4(byte[] b, int at) {
        return (hex(b[at]) << 12) | (hex(b[at + 1]) << 8) | (hex(b[at + 2]) << 4) | hex(b[at + 3]);
    }

    private static int hex(byte c) {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    }

    static int ws(byte[] b, int i) {
        while (i < b.length && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) {
            i++;
        }
        return i;
    }
}
