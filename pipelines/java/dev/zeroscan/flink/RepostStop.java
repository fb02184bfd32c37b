package dev.zeroscan.flink;

import org.apache.flink.table.functions.AggregateFunction;

/**
 * Whether a listing update stops before the scan, as an OVER aggregate per listing (from
 * the listing's first record to this one, in arrival order): TRUE for
 * <ul>
 * <li>an unchanged re-post: its fingerprint ({@link ContentFingerprint}) is that of the record
 * just before it;</li>
 * <li>a re-post whose content, its price apart, is that of every listing record since the run
 * began ({@link PriceFreeFingerprint}), where a scan of a record of this run has said the
 * content presents no brand: the job's own scans write that, per listing, to a compacted topic
 * it reads back (kind {@code quiet}: the offset of the listing record scanned, and its price-free
 * fingerprint, or {@code "-"} when the scan presented a brand or refused the record).</li>
 * </ul>
 *
 * <p>A run is the listing's records with one price-free fingerprint in a row: a record with
 * another one (or none), feedback and rescans end it. So a quiet verdict speaks of this very
 * content and of a scan made since the run began (its offset at least the run's first), and the
 * latest verdict counts: a scan of the run that presented a brand (after a brand change, or with
 * what feedback taught) revokes it. A verdict arrives a checkpoint after its scan (the topic is
 * read committed); until then the run's records cross and are scanned.
 *
 * <p>Arguments: the record's input kind ({@code listing}, {@code feedback}, {@code rescan},
 * {@code quiet}), its fingerprint and price-free fingerprint (NULL: not fingerprinted), its
 * offset, and for a {@code quiet} record the verdict's fingerprint and offset.
 */
public final class RepostStop extends AggregateFunction<Boolean, RepostStop.Acc> {
    private static final long serialVersionUID = 1L;

    /** Kept per listing in the OVER step's state. */
    public static final class Acc {
        /** The fingerprint of the record before (NULL after one without, feedback or a rescan). */
        public String lastFp;
        /** The run's price-free fingerprint, and the offset of its first record. */
        public String runPfp;
        public long runStart;
        /** The latest verdict: a price-free fingerprint ("-": revoked), and its record's offset. */
        public String quietPfp;
        public long quietPos;
        /** The answer for the record accumulated last. */
        public boolean stop;
    }

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    @Override
    public Boolean getValue(Acc acc) {
        return acc.stop;
    }

    public void accumulate(Acc acc, String kind, String fp, String pfp, Long pos, String verdict, Long verdictPos) {
        acc.stop = false;
        if ("quiet".equals(kind)) {
            acc.quietPfp = verdict;
            acc.quietPos = verdictPos == null ? Long.MIN_VALUE : verdictPos;
            return;
        }
        if (!"listing".equals(kind)) {
            acc.lastFp = null;
            acc.runPfp = null;
            return;
        }
        boolean identical = fp != null && fp.equals(acc.lastFp);
        acc.lastFp = fp;
        if (pfp != null && pfp.equals(acc.runPfp)) {
            acc.stop = identical || (pfp.equals(acc.quietPfp) && acc.quietPos >= acc.runStart);
            return;
        }
        acc.stop = identical;
        acc.runPfp = pfp;
        // Without an offset (file mode) no verdict can name the run: it never stops on one.
        acc.runStart = pos == null ? Long.MAX_VALUE : pos;
    }
}
