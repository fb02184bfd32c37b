package dev.zeroscan.flink;

import java.security.SecureRandom;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * Stops an unchanged re-post where it is read, before the keyed exchange: {@code eval(lid, fp,
 * slots)} gives {@code ""} (stop) when the record before it in this subtask that had the same
 * slot was a record with this very fingerprint, and {@code fp} (go on) otherwise.
 *
 * <p>A cache in front of the keyed step, which stays the authority: a slot holds only the
 * fingerprint of the last record whose listing id hashes to it, and a fingerprint ({@code
 * sha256hex/code points/period}, see {@link ContentFingerprint}) is taken over the whole record,
 * its {@code listing_id} included, so a slot that holds this record's fingerprint was last
 * written by this listing's own previous record in this subtask, with the same content: the
 * keyed step would have stopped this one too. Another listing in the slot, a restart (a new
 * instance, empty), a record without a fingerprint (feedback, a rescan, a record that is not
 * fingerprinted: {@code fp} NULL, which empties the listing's slot, as the keyed step's {@code
 * LAG} then reads NULL) only let the record go on to the keyed step. A slot keeps 128 bits of
 * the digest (a collision needs about 2^64 tries), the code points and the period exactly.
 *
 * <p>Not deterministic (it keeps state): the planner must evaluate it once per record, where it
 * is written. Its state is per subtask and in memory only; it is not checkpointed and need not
 * be: it only ever stops what the keyed state after it would stop.
 */
public final class ChangedHere extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    private static final StringData STOP = StringData.fromString("");
    /** Code points below 2^28 and a period below 2^36 pack into one long; others are not cached. */
    private static final int COUNT_BITS = 28;
    private static final int PERIOD_BITS = 36;

    /** Three longs per slot: the digest's first 128 bits and (code points, period); 0: empty. */
    private transient long[] table;
    private transient int mask;
    private transient long seed;

    @Override
    public boolean isDeterministic() {
        return false;
    }

    public @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData lid,
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData fp,
            Integer slots) {
        if (lid == null || slots == null || slots <= 0) {
            return fp;
        }
        if (table == null) {
            int n = Integer.highestOneBit(Math.min(Math.max(slots, 2), 1 << 26));
            table = new long[3 * n];
            mask = n - 1;
            seed = new SecureRandom().nextLong();
        }
        int at = 3 * (int) (hash(lid.toBytes(), seed) & mask);
        byte[] f = fp == null ? null : fp.toBytes();
        long tail = f == null ? 0 : tail(f);
        if (tail == 0) {
            table[at] = 0;
            table[at + 1] = 0;
            table[at + 2] = 0;
            return fp;
        }
        long d0 = hex(f, 0);
        long d1 = hex(f, 16);
        if (table[at + 2] == tail && table[at] == d0 && table[at + 1] == d1) {
            return STOP;
        }
        table[at] = d0;
        table[at + 1] = d1;
        table[at + 2] = tail;
        return fp;
    }

    /** (code points, period) of {@code <64 hex>/<code points>/<period>}, packed; 0 when not that. */
    static long tail(byte[] f) {
        if (f.length < 68 || f[64] != '/') {
            return 0;
        }
        for (int i = 0; i < 64; i++) {
            if (nibble(f[i]) < 0) {
                return 0;
            }
        }
        int i = 65;
        long count = 0;
        int start = i;
        while (i < f.length && f[i] >= '0' && f[i] <= '9' && i - start < 12) {
            count = count * 10 + (f[i++] - '0');
        }
        if (i == start || i >= f.length || f[i] != '/') {
            return 0;
        }
        start = ++i;
        long period = 0;
        while (i < f.length && f[i] >= '0' && f[i] <= '9' && i - start < 15) {
            period = period * 10 + (f[i++] - '0');
        }
        if (i == start || i != f.length || count <= 0 || count >= 1L << COUNT_BITS || period >= 1L << PERIOD_BITS) {
            return 0;
        }
        return (count << PERIOD_BITS) | period;
    }

    private static long hex(byte[] f, int from) {
        long v = 0;
        for (int i = from; i < from + 16; i++) {
            v = (v << 4) | nibble(f[i]);
        }
        return v;
    }

    private static int nibble(byte c) {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    }

    /**
     * The slot of a listing id: FNV-1a from a random basis, then a 64-bit finaliser. Listing ids
     * that share a slot only evict each other (their records go on to the keyed step), so a
     * seller who made ids collide would cost the job the path this cache saves, nothing more.
     */
    static long hash(byte[] b, long seed) {
        long h = seed ^ 0xcbf29ce484222325L;
        for (byte x : b) {
            h = (h ^ (x & 0xff)) * 0x100000001b3L;
        }
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        h *= 0xc4ceb9fe1a85ec53L;
        return h ^ (h >>> 33);
    }
}
