package cn.hutool.crypto;

import java.io.IOException;
import java.io.InputStream;
import org.bouncycastle.crypto.digests.SM3Digest;
import org.bouncycastle.util.encoders.Hex;

/** hutool's SmUtil.sm3: the SM3 digest of a stream, in hex. */
public class SmUtil {
    public static String sm3(InputStream in) {
        try {
            byte[] data = in.readAllBytes();
            SM3Digest digest = new SM3Digest();
            digest.update(data, 0, data.length);
            byte[] out = new byte[32];
            digest.doFinal(out, 0);
            return Hex.toHexString(out);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
