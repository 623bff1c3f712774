package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
)

// Rotating keys.master through the built binary, as README's operations section gives it:
// the new key in keys.master and the old one in keys.previous, restart, `kycstate keys
// rewrap`, then drop the old key. Every applicant's externalUserId opens at each step,
// applicants seen after the rotation included; a service started with only a key that
// opens nothing refuses to start, naming keys.master.
func TestMasterKeyRotationBinary(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	var ids []string
	post := func(n int) {
		t.Helper()
		id := newID()
		ids = append(ids, id)
		mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", time.Now().UTC(), fmt.Sprintf("rot%05d", n)))
	}
	opened := func(step string) {
		t.Helper()
		for _, id := range ids {
			deadline := time.Now().Add(30 * time.Second)
			for {
				var st client.State
				code, _ := getJSON(t, s.apiURL+"/v1/applicants/"+id, s.reader, &st)
				if code == 200 && st.ExternalUserID != nil && *st.ExternalUserID == "user-"+id[:8] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s answers %d, externalUserId %v", step, id, code, st.ExternalUserID)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	post(0)
	post(1)
	opened("before the rotation")
	p.mustTerm(t)

	old := s.master
	s.master, s.previous = randomHex(32), old
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p = s.start(t)
	opened("rotated, the old key in keys.previous")
	post(2) // its data key is wrapped under the new master key
	opened("rotated, a new applicant")
	p.mustTerm(t)

	out := s.mustOps(t, "keys", "rewrap")
	if !regexp.MustCompile(`rewrapped [1-9][0-9]* keys`).MatchString(out) {
		t.Fatalf("kycstate keys rewrap:\n%s", out)
	}
	if out := s.mustOps(t, "keys", "rewrap"); !strings.Contains(out, "rewrapped 0 keys") {
		t.Fatalf("kycstate keys rewrap, again:\n%s", out)
	}

	s.previous = ""
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p = s.start(t)
	opened("rewrapped, the old key dropped")
	p.mustTerm(t)
	s.mustOps(t, "verify")

	// A master key that opens nothing (the old one alone, after the rewrap deleted what it
	// wrapped): refused at start, with the setting named.
	s.master = old
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	out, err := runCmd(t, s.dir, nil, readyWait, bins.kycstate, "serve", "--config", s.cfgPath)
	if err == nil || !strings.Contains(out, "keys.master") {
		t.Fatalf("serve with a master key that opens nothing: %v\n%s", err, tail(out, 3000))
	}
}
