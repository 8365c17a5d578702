package cn.hutool.crypto;

import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.spec.KeySpec;
import java.security.spec.X509EncodedKeySpec;

/** hutool's KeyUtil.generatePublicKey for "SM2": an EC key from SubjectPublicKeyInfo. */
public class KeyUtil {
    public static PublicKey generatePublicKey(String algorithm, byte[] encoded) {
        return generatePublicKey(algorithm, new X509EncodedKeySpec(encoded));
    }

    public static PublicKey generatePublicKey(String algorithm, KeySpec spec) {
        try {
            return KeyFactory.getInstance("EC", new org.bouncycastle.jce.provider.BouncyCastleProvider()).generatePublic(spec);
        } catch (Exception e) {
            throw new IllegalArgumentException(e);
        }
    }
}
