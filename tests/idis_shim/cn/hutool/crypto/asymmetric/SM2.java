package cn.hutool.crypto.asymmetric;

import java.security.PrivateKey;
import java.security.PublicKey;
import org.bouncycastle.crypto.CipherParameters;
import org.bouncycastle.crypto.digests.SM3Digest;
import org.bouncycastle.crypto.engines.SM2Engine;
import org.bouncycastle.crypto.params.ECPrivateKeyParameters;
import org.bouncycastle.crypto.params.ECPublicKeyParameters;
import org.bouncycastle.crypto.params.ParametersWithID;
import org.bouncycastle.crypto.params.ParametersWithRandom;
import org.bouncycastle.crypto.signers.SM2Signer;
import org.bouncycastle.crypto.signers.StandardDSAEncoding;
import org.bouncycastle.jcajce.provider.asymmetric.util.ECUtil;

/** hutool's SM2 as the SDK uses it: DER signatures over SM3, C1C3C2 decryption. */
public class SM2 {
    private final ECPrivateKeyParameters priv;
    private final ECPublicKeyParameters pub;

    public SM2(PrivateKey privateKey, PublicKey publicKey) {
        try {
            priv = privateKey == null ? null : (ECPrivateKeyParameters) ECUtil.generatePrivateKeyParameter(privateKey);
            pub = publicKey == null ? null : (ECPublicKeyParameters) ECUtil.generatePublicKeyParameter(publicKey);
        } catch (Exception e) {
            throw new IllegalArgumentException(e);
        }
    }

    public byte[] sign(byte[] data, byte[] id) {
        SM2Signer signer = new SM2Signer(StandardDSAEncoding.INSTANCE, new SM3Digest());
        CipherParameters params = new ParametersWithRandom(priv);
        if (id != null) params = new ParametersWithID(params, id);
        signer.init(true, params);
        signer.update(data, 0, data.length);
        try {
            return signer.generateSignature();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    public byte[] sign(byte[] data) {
        return sign(data, null);
    }

    public String signHex(String dataHex, String idHex) {
        return cn.hutool.core.util.HexUtil.encodeHexStr(
            sign(cn.hutool.core.util.HexUtil.decodeHex(dataHex), cn.hutool.core.util.HexUtil.decodeHex(idHex)));
    }

    public boolean verify(byte[] data, byte[] signature) {
        SM2Signer signer = new SM2Signer(StandardDSAEncoding.INSTANCE, new SM3Digest());
        signer.init(false, pub);
        signer.update(data, 0, data.length);
        return signer.verifySignature(signature);
    }

    public byte[] decrypt(byte[] data) {
        SM2Engine engine = new SM2Engine(new SM3Digest(), SM2Engine.Mode.C1C3C2);
        engine.init(false, priv);
        try {
            return engine.processBlock(data, 0, data.length);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
