package cn.hutool.core.util;

import org.bouncycastle.util.encoders.Hex;

/** hutool's HexUtil, for the two calls the SDK makes. */
public class HexUtil {
    public static String encodeHexStr(byte[] data) {
        return Hex.toHexString(data);
    }

    public static byte[] decodeHex(String hex) {
        return hex == null ? null : Hex.decode(hex);
    }
}
