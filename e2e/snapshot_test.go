package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// snapTaken is what `kycstate snapshot` prints of the snapshot it took.
var snapTaken = regexp.MustCompile(`(?m)^snapshot (\S+): checkpoint (\d+),`)

// snapRow is a row of `kycstate snapshot --list`.
var snapRow = regexp.MustCompile(`^\d{20}-`)

// mustSnapshot runs `kycstate snapshot` on the stopped serve's data dir and returns the
// snapshot's name, checking its checkpoint.
func mustSnapshot(t *testing.T, s *binService, checkpoint uint64) string {
	t.Helper()
	out := s.mustOps(t, "snapshot")
	m := snapTaken.FindStringSubmatch(out)
	if m == nil || m[2] != strconv.FormatUint(checkpoint, 10) {
		t.Fatalf("kycstate snapshot said %q; want checkpoint %d", out, checkpoint)
	}
	return m[1]
}

// digests reads every applicant's digest once the node has folded up to seq.
func digests(t *testing.T, s *binService, ids []string, seq uint64) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		var st client.State
		if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, id, seq), s.reader, &st); code != http.StatusOK {
			t.Fatalf("GET state of %s at seq %d: %d %s", id, seq, code, body)
		}
		if st.Digest == "" {
			t.Fatalf("state of %s has no digest", id)
		}
		out[id] = st.Digest
	}
	return out
}

// Snapshot bootstrap through the built binary (DESIGN.md section 14): two snapshots taken
// by `kycstate snapshot`, the newer one marked as written by a newer schema, then a node
// killed (-9) half way through the upload of a third. The third is never listed; a node
// started without its projection skips the newer-schema one with a log line, restores
// the first, catches up, and every applicant's digest equals the one of the node that
// folded from sequence 1; `serve --from-scratch` agrees.
func TestSnapshotBootstrapAndKillMidUpload(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	s.extra = fmt.Sprintf("nats: { listen: %q }\nprojection: { snapshot_every: 0 }\n", strings.TrimPrefix(natsURL, "nats://"))
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})

	at := time.Now().Add(-time.Hour).UTC()
	var ids []string
	var last uint64
	n := 0
	post := func(applicants int) {
		for range applicants {
			id := newID()
			ids = append(ids, id)
			for _, typ := range []string{"applicantCreated", "applicantPending", "applicantReviewed"} {
				n++
				last = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, typ, "", at.Add(time.Duration(n)*time.Second), fmt.Sprintf("sn%04d", n))).seq
			}
		}
	}

	p := s.start(t)
	post(10)
	digests(t, s, ids[len(ids)-1:], last)
	p.mustTerm(t)
	older := mustSnapshot(t, s, last)

	p = s.start(t)
	post(5)
	digests(t, s, ids[len(ids)-1:], last)
	p.mustTerm(t)
	newer := mustSnapshot(t, s, last)

	// A node with the hooks: snapshots due every second, each upload held half way.
	s.bin = hookedKycstate(t)
	s.env = []string{"KYCSTATE_TEST_HOLD_MID_SNAPSHOT_UPLOAD=1", "KYCSTATE_PROJECTION_SNAPSHOT_EVERY=1s"}
	p = s.start(t)
	post(5)
	want := digests(t, s, ids, last)

	// The newer snapshot now says it was written by a schema this build does not read.
	// serve's listener takes only the nkey whose seed it keeps under data_dir.
	auth, err := nats.NkeyOptionFromSeed(filepath.Join(s.dataDir, "nats-client.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, auth)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	obs, err := js.ObjectStore(ctx, "KYC_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, newer)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := strconv.Atoi(info.Metadata["schema"])
	if err != nil {
		t.Fatalf("schema of %s: %q", newer, info.Metadata["schema"])
	}
	info.Metadata["schema"] = strconv.Itoa(schema + 1)
	info.Metadata["kycstate-version"] = "v99.0.0"
	if err := obs.UpdateMeta(ctx, newer, info.ObjectMeta); err != nil {
		t.Fatal(err)
	}
	cancel()
	nc.Close()

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.Output(), "snapshot upload held half way") {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot upload held within 60 s:\n%s", tail(p.Output(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill() // -9, half way through the upload
	s.bin, s.env = "", nil

	// The cut upload is not listed; the two before it are, the newer one not restorable.
	list := s.mustOps(t, "snapshot", "--list")
	var lines []string // the rows of snapshots: their names begin with 20 digits
	for _, l := range strings.Split(list, "\n") {
		if snapRow.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], newer) || !strings.HasPrefix(lines[1], older) ||
		!strings.Contains(lines[0], fmt.Sprintf("no: schema %d is newer", schema+1)) || !strings.HasSuffix(lines[1], "yes") {
		t.Fatalf("kycstate snapshot --list after the kill:\n%s", list)
	}

	path := filepath.Join(s.dataDir, "projection.db")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	p = s.start(t)
	got := digests(t, s, ids, last)
	out := p.Output()
	p.mustTerm(t)
	if !logLine(out, "snapshot skipped", newer, "newer kycstate (v99.0.0)") {
		t.Fatalf("no log line skipping %s as newer:\n%s", newer, tail(out, 4000))
	}
	if !logLine(out, "projection restored from a snapshot", older) {
		t.Fatalf("%s not restored:\n%s", older, tail(out, 4000))
	}
	sameDigests(t, "restored from a snapshot", got, want)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	p = start(t, s.dir, s.env, bins.kycstate, "serve", "--from-scratch", "--config", s.cfgPath)
	s.waitReady(t, p)
	got = digests(t, s, ids, last)
	out = p.Output()
	p.mustTerm(t)
	if strings.Contains(out, "projection restored from a snapshot") || !strings.Contains(out, "--from-scratch") {
		t.Fatalf("serve --from-scratch did not fold from 1:\n%s", tail(out, 4000))
	}
	sameDigests(t, "folded from 1", got, want)
}

// logLine reports whether one line of out holds every one of subs.
func logLine(out string, subs ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if contains(l, subs...) {
			return true
		}
	}
	return false
}

func sameDigests(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%s: %d applicants, want %d", what, len(got), len(want))
	}
	for id, d := range want {
		if got[id] != d {
			t.Fatalf("%s: applicant %s digest %s, want %s (the node that folded from 1)", what, id, got[id], d)
		}
	}
}
