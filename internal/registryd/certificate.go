package registryd

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// certificate is the TLS certificate served, from its files, swapped
// atomically by a reload: a handshake takes whichever is current, and a
// connection keeps the one it was made with.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// load reads and checks the pair. Its errors name the file to fix and
// never quote a key.
func (c *certificate) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key: %w", err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s and --tls-key %s: not a matching PEM certificate and private key: %w", c.certFile, c.keyFile, err)
	}
	return &kp, nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// certFields describe a certificate in the log: which one it is and until
// when it is valid.
func certFields(kp *tls.Certificate) []zap.Field {
	if kp == nil || kp.Leaf == nil {
		return nil
	}
	return []zap.Field{
		zap.String("cert_subject", kp.Leaf.Subject.String()),
		zap.String("cert_serial", kp.Leaf.SerialNumber.Text(16)),
		zap.String("cert_not_after", kp.Leaf.NotAfter.UTC().Format(time.RFC3339)),
	}
}
