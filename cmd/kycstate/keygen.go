package main

import (
	"context"
	"fmt"

	"github.com/kycstate/kycstate/domain"
)

func cmdKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "keygen", "Prints a fresh app key, AES-256 secret key, HMAC key and two API tokens, as YAML to paste into a config.")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `apps:
  - name: main
    app_key: %s
    method: aes-256-cbc
    secret_key: %s
    hmac_key: %s
api:
  tokens:
    - { name: product, role: reader, token: %s }
    - { name: audit, role: auditor, token: %s }
`, domain.NewUUID(), randHex(32), randHex(32), randHex(24), randHex(24))
	return nil
}
