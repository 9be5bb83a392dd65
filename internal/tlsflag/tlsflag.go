// Package tlsflag holds the TLS flags of the commands: a certificate, its
// key, and a CA file, turned into *tls.Config values.
package tlsflag

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// Flags are the TLS flags of a command.
type Flags struct {
	Cert, Key, CA string
}

// Register defines -tls-cert, -tls-key and the CA flag named caName
// ("tls-ca" or "tls-client-ca") with caUsage on fs.
func (f *Flags) Register(fs *flag.FlagSet, caName, caUsage string) {
	fs.StringVar(&f.Cert, "tls-cert", "", "PEM file of this program's TLS certificate (chain)")
	fs.StringVar(&f.Key, "tls-key", "", "PEM file of the key of -tls-cert")
	fs.StringVar(&f.CA, caName, "", caUsage)
}

// Set reports whether any of the flags was given.
func (f *Flags) Set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// load reads the certificate and the CA pool the flags name.
func (f *Flags) load() ([]tls.Certificate, *x509.CertPool, error) {
	var certs []tls.Certificate
	if (f.Cert == "") != (f.Key == "") {
		return nil, nil, errors.New("-tls-cert and -tls-key go together")
	}
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		certs = append(certs, c)
	}
	var pool *x509.CertPool
	if f.CA != "" {
		b, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, nil, err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("%s: no PEM certificate", f.CA)
		}
	}
	return certs, pool, nil
}

// Client returns the client configuration: the certificate to present
// and the CA to verify servers with (the system's roots without one), or
// nil when no flag was given.
func (f *Flags) Client() (*tls.Config, error) {
	if !f.Set() {
		return nil, nil
	}
	certs, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: certs, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// Server returns the server configuration: the certificate, and when the
// CA flag is set, client certificates required and verified against it;
// nil when no flag was given.
func (f *Flags) Server() (*tls.Config, error) {
	if !f.Set() {
		return nil, nil
	}
	certs, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("a TLS server needs -tls-cert and -tls-key")
	}
	c := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS13}
	if pool != nil {
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}
