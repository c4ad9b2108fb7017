package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeCA writes a CA and a server certificate for 127.0.0.1 signed by it.
func writeCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

func TestTLSWithCAFile(t *testing.T) {
	needRegistry(t)
	certs := t.TempDir()
	caFile, certFile, keyFile := writeCA(t, certs)
	reg, err := startRegistryConfig(os.Getenv("REGISTRY_BIN"), "", "  tls:\n    certificate: "+certFile+"\n    key: "+keyFile+"\n")
	require.NoError(t, err)
	defer reg.close()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "over TLS", 0o644)
	o := reg.opts(t, "tls/repo")
	o.PlainHTTP = false
	o.Retries = 1

	// without the CA: refused by TLS verification, exit 1
	_, err = Push(context.Background(), PushOptions{Options: o, Tag: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir()})
	require.Error(t, err)
	require.Equal(t, ExitFailed, ExitCode(err))
	require.True(t, strings.Contains(err.Error(), "certificate"), err.Error())
	require.NotContains(t, err.Error(), "attempts", "a TLS trust failure is not retried")

	o.CAFile = caFile
	_, err = Push(context.Background(), PushOptions{Options: o, Tag: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	dst := t.TempDir()
	_, err = Pull(context.Background(), PullOptions{Options: o, From: []string{"t"}, Mounts: []Mount{{Dir: dst}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, snapshot(t, src), snapshot(t, dst))
}

func TestOwnershipAsRoot(t *testing.T) {
	e := newEnv(t)
	if os.Geteuid() != 0 {
		t.Skip("owners are restored only when running as root")
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "d/owned"), "x", 0o640)
	require.NoError(t, os.Lchown(filepath.Join(src, "d/owned"), 1234, 5678))
	require.NoError(t, os.Lchown(filepath.Join(src, "d"), 4321, 8765))
	require.NoError(t, os.Symlink("owned", filepath.Join(src, "d/link")))
	require.NoError(t, os.Lchown(filepath.Join(src, "d/link"), 1111, 2222))
	e.push("own", t.TempDir(), Mount{Dir: src})
	dst := t.TempDir()
	e.pull([]string{"own"}, t.TempDir(), Mount{Dir: dst})
	for p, want := range map[string][2]int{"d/owned": {1234, 5678}, "d": {4321, 8765}, "d/link": {1111, 2222}} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		require.NoError(t, err)
		st := statT(fi)
		require.Equal(t, strconv.Itoa(want[0])+":"+strconv.Itoa(want[1]), strconv.Itoa(int(st.Uid))+":"+strconv.Itoa(int(st.Gid)), p)
	}
}

// htpasswdLine is user "tekton", password "s3cret" (bcrypt, cost 4).
const htpasswdLine = "tekton:$2b$04$VOXNQjkKef/nt4.q8YaI6OZXxhUlxLYPsZSjA56zZuClaaLhS182O\n"

func TestDockerConfigAuth(t *testing.T) {
	needRegistry(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCA(t, dir)
	htpasswd := filepath.Join(dir, "htpasswd")
	require.NoError(t, os.WriteFile(htpasswd, []byte(htpasswdLine), 0o600))
	reg, err := startRegistryConfig(os.Getenv("REGISTRY_BIN"), "",
		"  tls:\n    certificate: "+certFile+"\n    key: "+keyFile+"\nauth:\n  htpasswd:\n    realm: test\n    path: "+htpasswd+"\n")
	require.NoError(t, err)
	defer reg.close()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "authenticated", 0o644)
	o := reg.opts(t, "auth/repo")
	o.PlainHTTP, o.CAFile, o.Retries = false, caFile, 1

	_, err = Push(context.Background(), PushOptions{Options: o, Tag: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir()})
	require.Error(t, err, "anonymous push is refused")
	require.Equal(t, ExitFailed, ExitCode(err))

	cfg := filepath.Join(dir, "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte("tekton:s3cret"))
	require.NoError(t, os.WriteFile(cfg, []byte(`{"auths":{"`+reg.addr+`":{"auth":"`+auth+`"}}}`), 0o600))
	o.DockerConfig = cfg
	_, err = Push(context.Background(), PushOptions{Options: o, Tag: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	dst := t.TempDir()
	_, err = Pull(context.Background(), PullOptions{Options: o, From: []string{"t"}, Mounts: []Mount{{Dir: dst}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, snapshot(t, src), snapshot(t, dst))
}
