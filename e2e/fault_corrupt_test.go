package e2e

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fBoltMeta is what the test needs of a bbolt file's current meta page: the page size,
// the high-water page id (pages [0, pgid) are the file's data) and the root page.
type fBoltMeta struct {
	pageSize int
	pgid     uint64
	root     uint64
	freelist uint64
}

// fReadBoltMeta reads the newer valid one of the two meta pages. Layout (bbolt's page and
// meta structs, little-endian): page header id u64, flags u16, count u16, overflow u32;
// then magic u32, version u32, pageSize u32, flags u32, root bucket (root u64, sequence
// u64), freelist u64, pgid u64, txid u64, checksum u64.
func fReadBoltMeta(t *testing.T, b []byte) fBoltMeta {
	t.Helper()
	const magic = 0xED0CDAED
	le := binary.LittleEndian
	var best fBoltMeta
	var bestTx uint64
	found := false
	for _, off := range []int{0, 4096} {
		if len(b) < off+80 || le.Uint32(b[off+16:]) != magic {
			continue
		}
		m := fBoltMeta{pageSize: int(le.Uint32(b[off+24:])), root: le.Uint64(b[off+32:]),
			freelist: le.Uint64(b[off+48:]), pgid: le.Uint64(b[off+56:])}
		if tx := le.Uint64(b[off+64:]); !found || tx > bestTx {
			best, bestTx, found = m, tx, true
		}
	}
	if !found || best.pageSize != 4096 {
		t.Fatalf("projection.db: no valid bbolt meta page with 4096-byte pages (test assumes them)")
	}
	return best
}

// fLeafInUse returns the first leaf page at or after from that the freelist does not
// list, so damaging it damages data the projection holds. Page header: id u64, flags u16
// (leaf 0x02), count u16; a freelist page lists count page ids (u64) after the header, or
// when count is 0xFFFF, the real count as the first u64.
func fLeafInUse(t *testing.T, b []byte, m fBoltMeta, from uint64) uint64 {
	t.Helper()
	le := binary.LittleEndian
	free := map[uint64]bool{}
	fl := b[int(m.freelist)*m.pageSize:]
	count, ids := int(le.Uint16(fl[10:])), fl[16:]
	if count == 0xFFFF {
		count, ids = int(le.Uint64(ids)), ids[8:]
	}
	for i := range count {
		free[le.Uint64(ids[8*i:])] = true
	}
	for id := from; id < m.pgid; id++ {
		pg := b[int(id)*m.pageSize:]
		if le.Uint64(pg) == id && le.Uint16(pg[8:])&0x02 != 0 && !free[id] {
			return id
		}
	}
	t.Fatalf("no leaf page in use from page %d on", from)
	return 0
}

// fRandom returns n random bytes.
func fRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// fStartOrExit starts serve and waits until either its API answers /healthz or it exits.
func fStartOrExit(t *testing.T, s *binService) (p *proc, exited bool) {
	t.Helper()
	p = start(t, s.dir, s.env, bins.kycstate, "serve", "--config", s.cfgPath)
	deadline := time.Now().Add(readyWait)
	for {
		select {
		case <-p.done:
			return p, true
		default:
		}
		if code, _ := fStatus(s.apiURL + "/healthz"); code == http.StatusOK {
			if code, _ := fStatus(s.ingestURL + "/healthz"); code == http.StatusOK {
				return p, false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on a damaged projection neither answered nor exited within %s\n%s", readyWait, tail(p.Output(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultCorruptProjection damages a stopped service's projection.db in the ways a disk,
// a crash of the machine or an operator can (emptied, cut inside the meta pages, cut
// short of its pages, meta pages overwritten, the root page or every page overwritten, a
// page zeroed) and starts serve on it. Promised: serve either refuses to start, exiting
// non-zero with a message that names the file and says to run kycstate rebuild, or it
// handles the damage and serves every applicant exactly as before (never a different
// state with 200, never a panic). Either way `kycstate rebuild` recovers from the log,
// verify passes, and serve answers every applicant as before the damage.
func TestFaultCorruptProjection(t *testing.T) {
	needBins(t)
	began := time.Now()
	s := newBinService(t)
	p := s.start(t)
	at := time.Now().Add(-time.Hour)
	var applicants []string
	n := 0
	for a := range 60 {
		id := newID()
		applicants = append(applicants, id)
		for j, ev := range journey[:3+a%5] {
			h := sealHook(t, s.app, s.app.Keys[0], id, ev.typ, ev.step, at.Add(time.Duration(a*20+j)*time.Second), fmt.Sprintf("c-%d-%d", a, j))
			mustPost(t, s.ingestURL, s.app.Name, h)
			n++
		}
	}
	// Every read the API offers over this data, as answered before the damage: states,
	// histories, the externalUserId and status indexes, the change feed and anomalies.
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, applicants[0], n), s.reader, nil); code != http.StatusOK {
		t.Fatalf("projection did not catch up: %d %s", code, body)
	}
	reads := []string{"/v1/changes?limit=1000", "/v1/anomalies?limit=1000"}
	for _, st := range []string{"INIT", "IN_PROGRESS", "COMPLETED", "IN_REVIEW", "ON_HOLD", "APPROVED", "REJECTED"} {
		reads = append(reads, "/v1/applicants?limit=1000&status="+st)
	}
	for _, id := range applicants {
		reads = append(reads, "/v1/applicants/"+id, "/v1/applicants/"+id+"/history?limit=1000",
			"/v1/applicants?externalUserId=user-"+id[:8])
	}
	want := map[string]string{}
	for _, r := range reads {
		code, body := getJSON(t, s.apiURL+r, s.auditor, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", r, code, body)
		}
		want[r] = body
	}
	p.mustTerm(t)
	path := filepath.Join(s.dataDir, "projection.db")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := fReadBoltMeta(t, good)
	used := int(meta.pgid) * meta.pageSize
	t.Logf("%d events of %d applicants; projection.db %d KiB, %d pages in use, root page %d, freelist page %d",
		n, len(applicants), len(good)>>10, meta.pgid, meta.root, meta.freelist)
	if meta.pgid < 8 {
		t.Fatalf("projection has only %d pages; the damage cases need more", meta.pgid)
	}

	page := func(id uint64) (int, int) { return int(id) * meta.pageSize, int(id+1) * meta.pageSize }
	overwrite := func(b []byte, from, to int, with []byte) []byte {
		out := append([]byte(nil), b...)
		copy(out[from:to], with)
		return out
	}
	cases := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"emptied", func(b []byte) []byte { return nil }},
		{"cut inside the second meta page", func(b []byte) []byte { return b[:meta.pageSize+1000] }},
		{"cut short of its pages", func(b []byte) []byte { return b[:used/2] }},
		{"meta pages overwritten", func(b []byte) []byte { return overwrite(b, 0, 2*meta.pageSize, fRandom(2*meta.pageSize)) }},
		{"root page overwritten", func(b []byte) []byte {
			from, to := page(meta.root)
			return overwrite(b, from, to, fRandom(meta.pageSize))
		}},
		{"every page after the meta pages overwritten", func(b []byte) []byte {
			return overwrite(b, 2*meta.pageSize, used, fRandom(used-2*meta.pageSize))
		}},
	}
	// Leaf pages spread over the file: between them they hold states, history, indexes
	// and changes, and bbolt opens the file without reading any of them.
	for i := uint64(1); i <= 4; i++ {
		leaf := fLeafInUse(t, good, meta, meta.pgid*i/5)
		cases = append(cases, struct {
			name   string
			damage func([]byte) []byte
		}{fmt.Sprintf("leaf page %d zeroed", leaf), func(b []byte) []byte {
			from, to := page(leaf)
			return overwrite(b, from, to, make([]byte, meta.pageSize))
		}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.damage(good), 0o600); err != nil {
				t.Fatal(err)
			}
			p, exited := fStartOrExit(t, s)
			out := p.Output()
			fNoPanic(t, "serve on the damaged projection", out)
			if exited {
				code := exitStatus(p.err)
				if code <= 0 || !strings.Contains(out, path) || !strings.Contains(out, "kycstate rebuild") {
					t.Errorf("serve on the damaged projection exited %d; want non-zero with a message naming %s and saying to run kycstate rebuild:\n%s",
						code, path, tail(out, 3000))
				}
				t.Logf("refused to start (exit %d): %s", code, fLastLine(out))
			} else {
				fCheckHandled(t, s, p, want, n)
			}

			rb := s.mustOps(t, "rebuild")
			mustVerify(t, s, n)
			p = s.start(t)
			for r, body := range want {
				if code, got := getJSON(t, s.apiURL+r, s.auditor, nil); code != http.StatusOK || got != body {
					t.Errorf("after rebuild, GET %s: %d %s\nwant 200 %s", r, code, got, body)
				}
			}
			p.mustTerm(t)
			t.Logf("rebuild: %s", strings.TrimSpace(rb))
		})
	}
	t.Logf("done in %s", time.Since(began).Round(time.Millisecond))
}

// fCheckHandled checks a serve that started on a damaged projection: once the projector
// reports ready, every read is answered exactly as before the damage or with a 5xx;
// a 200 with other content is the failure this guards against. Then it stops serve.
func fCheckHandled(t *testing.T, s *binService, p *proc, want map[string]string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	ready := false
	for time.Now().Before(deadline) {
		if code, _ := fStatus(s.apiURL + "/readyz"); code == http.StatusOK {
			ready = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/changes?after=%d&limit=1", s.apiURL, n-1), s.auditor, nil); code != http.StatusOK {
		t.Logf("change feed at the last sequence: %d %s", code, body)
	}
	var served, refused int
	var refusal string
	for r, body := range want {
		code, got := getJSON(t, s.apiURL+r, s.auditor, nil)
		switch {
		case code == http.StatusOK && got == body:
			served++
		case code >= 500:
			if refused++; refused == 1 {
				refusal = fmt.Sprintf("%d %s", code, got)
			}
		default:
			t.Errorf("serve on a damaged projection answered GET %s with %d %s\nwant 200 %s, or a 5xx", r, code, got, body)
		}
	}
	code, rbody := fStatus(s.apiURL + "/readyz")
	t.Logf("serve started on the damaged projection: ready %v (now %d %s); %d reads answered as before, %d refused with 5xx",
		ready, code, strings.TrimSpace(rbody), served, refused)
	if refused > 0 {
		t.Logf("first refusal: %s", refusal)
	}
	if refused > 0 {
		path := filepath.Join(s.dataDir, "projection.db")
		var logged string
		for _, l := range fLogLines(p.Output()) {
			if (l.Level == "error" || l.Level == "warn") && strings.Contains(l.raw, path) && strings.Contains(l.raw, "kycstate rebuild") {
				logged = l.raw
				break
			}
		}
		if logged == "" {
			t.Errorf("reads fail on the damaged projection and no error logged names %s and says to run kycstate rebuild:\n%s", path, tail(p.Output(), 3000))
		} else {
			t.Logf("logged: %s", logged)
		}
		if code == http.StatusOK {
			// A load balancer keeps sending reads to a node whose every read fails.
			t.Errorf("reads fail on the damaged projection but /readyz answers 200")
		}
	}
	fAlive(t, p, "serve on a damaged projection")
	fNoPanic(t, "serve on the damaged projection", p.Output())
	if err := p.term(t, stopWait); err != nil {
		t.Logf("serve on the damaged projection stopped with %v", err)
	}
}

// fLastLine returns the last non-empty line of out.
func fLastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}
