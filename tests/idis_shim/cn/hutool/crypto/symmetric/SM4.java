package cn.hutool.crypto.symmetric;

import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/** hutool's SM4 as the SDK uses it: mode and padding named, key and IV given. */
public class SM4 {
    private final String transformation;
    private final byte[] key;
    private final byte[] iv;

    public SM4(cn.hutool.crypto.Mode mode, cn.hutool.crypto.Padding padding, byte[] key, byte[] iv) {
        this.transformation = "SM4/" + mode + "/" + padding;
        this.key = key;
        this.iv = iv;
    }

    private byte[] run(int direction, byte[] data) {
        try {
            Cipher cipher = Cipher.getInstance(transformation, new org.bouncycastle.jce.provider.BouncyCastleProvider());
            cipher.init(direction, new SecretKeySpec(key, "SM4"), new IvParameterSpec(iv));
            return cipher.doFinal(data);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    public byte[] encrypt(byte[] data) {
        return run(Cipher.ENCRYPT_MODE, data);
    }

    public byte[] decrypt(byte[] data) {
        return run(Cipher.DECRYPT_MODE, data);
    }
}
