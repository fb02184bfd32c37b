package dev.zeroscan.flink;

import org.apache.flink.core.memory.MemorySegment;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * Whether a record's bytes hold {@code "op"} as written or a JSON escape (a backslash and a
 * {@code u}): the cheap test before the job's delete test (a record without either cannot hold
 * the key {@code op}, so its JSON is not parsed). The same answer as {@code POSITION('"op"' IN s)
 * > 0 OR POSITION('&#92;u' IN s) > 0}, for any bytes: like Flink 2.2's search
 * ({@code BinaryStringData.indexOf}) it tries the patterns where each character starts, moving on
 * by the length a character's first byte gives (so after a stray lead byte of invalid UTF-8 it
 * skips what that byte claims), in one pass over the bytes where they lie. Flink's search
 * compares the pattern at each of those places through a memory-segment call, and with the
 * patterns absent, as in nearly every listing, it walked the record twice: 39 % of the JVM's CPU
 * samples in a wave of price-only re-posts.
 */
public final class MayHoldOp extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public Boolean eval(@DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData text) {
        if (text == null) {
            return null;
        }
        if (text instanceof BinaryStringData) {
            BinaryStringData s = (BinaryStringData) text;
            s.ensureMaterialized();
            MemorySegment[] segments = s.getSegments();
            if (segments.length == 1 && !segments[0].isOffHeap()) {
                return holds(segments[0].getArray(), s.getOffset(), s.getOffset() + s.getSizeInBytes());
            }
        }
        byte[] b = text.toBytes();
        return holds(b, 0, b.length);
    }

    /** Whether b[from, to) holds {@code "op"} or a backslash and a {@code u} where a character starts. */
    static boolean holds(byte[] b, int from, int to) {
        for (int i = from; i < to - 1; i += charLength(b[i])) {
            byte c = b[i];
            if (c == '"') {
                if (i + 3 < to && b[i + 1] == 'o' && b[i + 2] == 'p' && b[i + 3] == '"') {
                    return true;
                }
            } else if (c == '\\' && b[i + 1] == 'u') {
                return true;
            }
        }
        return false;
    }

    /** The bytes of the character this byte starts, as Flink's string search counts them. */
    static int charLength(byte b) {
        if (b >= 0) {
            return 1;
        }
        if ((b >> 5) == -2 && (b & 0x1e) != 0) {
            return 2;
        }
        if ((b >> 4) == -2) {
            return 3;
        }
        return (b >> 3) == -2 ? 4 : 1;
    }
}
