package dev.zeroscan.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * A string's size in UTF-8 bytes, read from its header: Flink 2.2 has no byte length of a
 * STRING or BYTES value in SQL, and CHAR_LENGTH walks every byte to count characters.
 */
public final class ByteLength extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public Integer eval(@DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData text) {
        if (text == null) {
            return null;
        }
        return text instanceof BinaryStringData ? ((BinaryStringData) text).getSizeInBytes() : text.toBytes().length;
    }
}
