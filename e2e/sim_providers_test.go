package e2e

import (
	"regexp"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest/providertest"
)

// kycstate sim --provider P drives each provider's journeys, resends, late deliveries
// and forgeries against the running binary and finds every state as the fold says.
func TestSimProviders(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	withProviders(t, s)
	p := s.start(t)
	for _, prov := range providertest.Providers() {
		out, err := runCmd(t, s.dir, s.env, 2*time.Minute, bins.kycstate, "sim", "--provider", string(prov), "--config", s.cfgPath,
			"--ingest", s.ingestURL, "--api", s.apiURL, "--applicants", "12", "--seed", "5",
			"--resend", "0.3", "--late", "0.3", "--bad-signature", "0.3")
		if err != nil {
			t.Fatalf("kycstate sim --provider %s: %v\n%s\nservice:\n%s", prov, err, out, tail(p.Output(), 3000))
		}
		for _, want := range []string{`mismatches\s+0\n`, `result\s+OK`} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Fatalf("sim --provider %s: the report does not match %q:\n%s", prov, want, out)
			}
		}
	}
	p.mustTerm(t)
}
