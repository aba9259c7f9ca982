package srapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// TLSFiles are the PEM files that let the client talk to an https registry
// signed by a private CA, and authenticate with a client certificate. Its
// errors name the --cacert, --cert and --key flags that set the fields in
// sr-wrapper and srctl.
type TLSFiles struct {
	// CACert is a PEM bundle of the CAs that sign the registry's
	// certificates. It replaces the system's roots, as curl's --cacert
	// does: the system pool is then never loaded.
	CACert string
	// Cert and Key are a client certificate (PEM, the leaf first, then
	// any intermediates) and its private key, for a registry that asks
	// for one. Both or neither.
	Cert, Key string
}

// IsZero reports whether no file is named.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// Check reads the files and checks their PEM framing — a certificate in
// each certificate file, a private key in the key file, a key with its
// certificate — without parsing certificates or keys, which the client does
// at its first connection, beside the wrapped program rather than in front
// of it. It is for flag validation: what it finds is a usage error.
func (f TLSFiles) Check() error {
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("--cert and --key: give both or neither (a client certificate needs its private key)")
	}
	if f.CACert != "" {
		if err := checkPEM("--cacert", f.CACert, isCertificate, "certificate"); err != nil {
			return err
		}
	}
	if f.Cert != "" {
		if err := checkPEM("--cert", f.Cert, isCertificate, "certificate"); err != nil {
			return err
		}
		if err := checkPEM("--key", f.Key, isPrivateKey, "private key"); err != nil {
			return err
		}
	}
	return nil
}

func isCertificate(b *pem.Block) bool { return b.Type == "CERTIFICATE" }

// isPrivateKey accepts the block types tls.X509KeyPair does: "PRIVATE
// KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY".
func isPrivateKey(b *pem.Block) bool {
	return b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY")
}

// checkPEM reads path and checks that it holds a PEM block that want
// accepts.
func checkPEM(flag, path string, want func(*pem.Block) bool, what string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return fmt.Errorf("%s: no PEM %s in %s", flag, what, path)
		}
		if want(b) {
			return nil
		}
	}
}

// apply loads the files into tc: the CA pool as its roots, the client
// certificate. Errors are *TLSError.
func (f TLSFiles) apply(tc *tls.Config) error {
	if f.CACert != "" {
		pool, err := loadCAPool(f.CACert)
		if err != nil {
			return &TLSError{msg: "--cacert " + f.CACert + ": " + err.Error()}
		}
		tc.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return &TLSError{msg: fmt.Sprintf("--cert %s, --key %s: %v", f.Cert, f.Key, err)}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// loadCAPool parses every certificate of a PEM bundle. Unlike
// CertPool.AppendCertsFromPEM it says which certificate is bad rather than
// skipping it.
func loadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if !isCertificate(b) {
			continue
		}
		n++
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// TLSError is a TLS failure that retrying cannot fix: the registry's
// certificate does not verify (unknown authority, another host's name,
// expired), the registry refused the client certificate or wanted one, the
// registry does not speak TLS at all, or the TLS files do not load. Its
// text says what is wrong in plain words and which flag fixes it. It is a
// configuration error: IsPermanent, never IsTransient.
type TLSError struct {
	msg string
	// Err is the TLS or x509 error underneath, nil for a file that did
	// not load (whose error is in the text).
	Err error
}

func (e *TLSError) Error() string {
	if e.Err == nil {
		return e.msg
	}
	return e.msg + " (" + e.Err.Error() + ")"
}

func (e *TLSError) Unwrap() error { return e.Err }

// tlsProblem turns a failed connection to host into a *TLSError when TLS
// is what failed, naming the fix; it returns nil for any other failure.
// files says which TLS flags were given, for the hint.
func tlsProblem(err error, host string, files TLSFiles) *TLSError {
	if ue, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		hint := "use --cacert with the CA that signed the registry's certificate"
		if files.CACert != "" {
			hint = "the CA that signed the registry's certificate is not in --cacert " + files.CACert
		}
		return &TLSError{msg: "certificate signed by unknown authority for " + host + ": " + hint, Err: ue}
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		return &TLSError{msg: "certificate of the registry does not name " + host + ": use a registry URL with a name the certificate holds, or reissue the certificate for " + host, Err: he}
	}
	if ie, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if ie.Reason == x509.Expired {
			return &TLSError{msg: "certificate of the registry at " + host + " has expired or is not valid yet: renew it (or check this host's clock)", Err: ie}
		}
		return &TLSError{msg: "certificate of the registry at " + host + " is not valid", Err: ie}
	}
	if ve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return &TLSError{msg: "certificate of the registry at " + host + " does not verify", Err: ve.Err}
	}
	// A TLS alert from the server is a *net.OpError with Op "remote
	// error" whose Err (an unexported type of crypto/tls) reads "tls: <the
	// alert's description>"; those about certificates are the server
	// refusing ours.
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" && oe.Err != nil &&
		strings.Contains(oe.Err.Error(), "certificate") {
		if files.Cert == "" {
			return &TLSError{msg: "the registry at " + host + " requires a client certificate: use --cert and --key", Err: oe.Err}
		}
		return &TLSError{msg: "the registry at " + host + " refused the client certificate --cert " + files.Cert + ": is it signed by a CA the registry trusts, and still valid?", Err: oe.Err}
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &TLSError{msg: "the registry at " + host + " does not speak TLS: use an http:// URL for it", Err: err}
	}
	return nil
}
