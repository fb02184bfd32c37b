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
 * > 0 OR POSITION('&#92;u' IN s) > 0} (both patterns are ASCII, and an ASCII byte is never part
 * of a longer UTF-8 sequence; invalid UTF-8 is searched as the bytes it is, as POSITION does), in
 * one pass over the bytes where they lie: Flink 2.2's POSITION compares the pattern at every byte
 * through a memory-segment call, and with the patterns absent, as in nearly every listing, it
 * walked the record twice: 39 % of the JVM's CPU samples in a wave of price-only re-posts.
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

    /** Whether b[from, to) holds {@code "op"} or a backslash and a {@code u}. */
    static boolean holds(byte[] b, int from, int to) {
        for (int i = from; i < to - 1; i++) {
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
}
