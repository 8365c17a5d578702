// One request in an encrypted session of the id-pointer SDK (key exchange mode 3), made by
// the SDK's own transport classes: TransportOnTcpLogin runs TransportEncryptHandler (the
// 400 setup, the session key decrypted with the identity's RSA or SM2 key), then the login
// (2001 and its challenge) and the request, every message after the setup encrypted by
// MessagePacketsManager and every reply decrypted by HandleDecoder.
//
// The SDK's IDClient never sets a request's encrypt flag (2.3.1 stores the option and
// never reads it), so this wires the transport itself, as an application would have to.
//
//   IdisEncrypted HOST PORT IDENTITY_HANDLE INDEX KEYFILE [--sm2] resolve HANDLE
//   IdisEncrypted HOST PORT IDENTITY_HANDLE INDEX KEYFILE [--sm2] create HANDLE INDEX:TYPE:DATA...
//
// Prints one JSON line, {"ok": true, "values": [...]} or {"ok": false, "error": "..."}.
import cn.teleinfo.idpointer.sdk.client.LoginInfoPoolKey;
import cn.teleinfo.idpointer.sdk.core.*;
import cn.teleinfo.idpointer.sdk.transport.*;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Security;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;

public class IdisEncrypted {
    static PrivateKey key(String path, boolean sm2) throws Exception {
        if (Security.getProvider("BC") == null) Security.addProvider(new org.bouncycastle.jce.provider.BouncyCastleProvider());
        String pem = new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.US_ASCII);
        byte[] der = Base64.getDecoder().decode(pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", ""));
        // The SDK takes the SM2 branch for keys whose algorithm is "EC".
        if (sm2) return KeyFactory.getInstance("EC", "BC").generatePrivate(new PKCS8EncodedKeySpec(der));
        return KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(der));
    }

    static String q(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\"";
    }

    public static void main(String[] argv) {
        try {
            System.out.println(run(argv));
            System.exit(0);
        } catch (Throwable e) {
            StringBuilder m = new StringBuilder(String.valueOf(e));
            for (Throwable c = e.getCause(); c != null; c = c.getCause()) m.append(" <- ").append(c);
            System.out.println("{\"ok\":false,\"error\":" + q(m.toString()) + "}");
            System.exit(1);
        }
    }

    static String run(String[] argv) throws Exception {
        List<String> a = new ArrayList<>(Arrays.asList(argv));
        boolean sm2 = a.remove("--sm2");
        InetSocketAddress addr = new InetSocketAddress(a.get(0), Integer.parseInt(a.get(1)));
        String identity = a.get(2);
        int index = Integer.parseInt(a.get(3));
        AuthenticationInfo auth = new PublicKeyAuthenticationInfo(Util.encodeString(identity), index, key(a.get(4), sm2));
        String op = a.get(5);
        String handle = a.get(6);

        AbstractIdRequest request;
        if (op.equals("create")) {
            List<HandleValue> values = new ArrayList<>();
            for (String spec : a.subList(7, a.size())) {
                String[] p = spec.split(":", 3);
                values.add(new HandleValue(Integer.parseInt(p[0]), p[1], p[2]));
            }
            request = new CreateHandleIdRequest(Util.encodeString(handle), values.toArray(new HandleValue[0]), auth);
        } else {
            request = new ResolutionIdRequest(Util.encodeString(handle), null, null, null);
        }
        request.encrypt = true;
        request.requestId = RequestIdFactoryDefault.getInstance().getNextInteger();

        // 20-second answers (the promise timeout; a cold JVM signing with SM2 on a busy
        // machine takes seconds), one connection per server.
        ChannelPoolMapManager pools = new ChannelPoolMapManager(20, 1, 1);
        try {
            TransportOnTcpLogin transport = new TransportOnTcpLogin(
                    pools.getLoginChannelPoolMap(), pools.getMessageManager(), RequestIdFactoryDefault.getInstance());
            LoginInfoPoolKey poolKey = new LoginInfoPoolKey(addr, new ValueReference(identity, index));
            // The SDK's "ChannelPoolClean" thread closes login pools whose last activity is
            // older than their idle time, and a new pool's is 0 until first used: if its
            // first pass falls between the pool's creation and the request's acquire, the
            // request fails with "FixedChannelPool was closed". Mark the pool as active.
            pools.getLoginChannelPoolMap().get(poolKey).setLastActiveTime(System.currentTimeMillis());
            AbstractIdResponse response = transport.process(request, poolKey, auth).get(30, TimeUnit.SECONDS);
            if (response.responseCode != 1) {
                return "{\"ok\":false,\"error\":" + q("response code " + response.responseCode) + "}";
            }
            StringBuilder out = new StringBuilder("{\"ok\":true,\"values\":[");
            if (response instanceof ResolutionIdResponse) {
                HandleValue[] values = ((ResolutionIdResponse) response).getHandleValues();
                for (int i = 0; i < values.length; i++) {
                    if (i > 0) out.append(",");
                    out.append("{\"index\":").append(values[i].getIndex())
                       .append(",\"type\":").append(q(values[i].getTypeAsString()))
                       .append(",\"data\":").append(q(values[i].getDataAsString())).append("}");
                }
            }
            return out.append("]}").toString();
        } finally {
            pools.close();
        }
    }
}
