package main

import (
	"context"
	"fmt"

	"github.com/kycstate/kycstate/domain"
)

func cmdKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "keygen", "Prints a fresh app key, AES-256 secret key, HMAC key, three API tokens, a console session key and a master key (keys.master), as YAML to paste into a config.")
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
    - { name: dpo, role: admin, token: %s }
  console:
    # Signs console sessions; every query node behind one balancer needs the same.
    session_key: %s
keys:
  # Wraps every applicant's data key (DESIGN.md section 11). Keep it apart from the data:
  # without it no personal data in the log can be read; with it and the log, all of it.
  master: %s
`, domain.NewUUID(), randHex(32), randHex(32), randHex(24), randHex(24), randHex(24), randHex(32), randHex(32))
	return nil
}
