package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// secInput is one webhook body and signature handed to Open.
type secInput struct {
	name     string
	body     []byte
	sig      string
	validPad bool // what the test knows with the key; only the controls look at it
}

// secSample times open over inputs a and b, interleaved: each round times one batch of a
// and one of b, in random order, so drift in the machine's speed (other tests, frequency
// scaling, GC) falls on both alike. It returns each batch's nanoseconds per call.
func secSample(open func(in secInput) error, a, b secInput, rounds, batch int, rng *mrand.Rand) (ta, tb []float64) {
	run := func(in secInput) float64 {
		t0 := time.Now()
		for range batch {
			open(in) //nolint:errcheck // only the time matters here
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(batch)
	}
	for range 50 { // warm up caches and the branch predictor on both
		run(a)
		run(b)
	}
	for range rounds {
		if rng.IntN(2) == 0 {
			ta = append(ta, run(a))
			tb = append(tb, run(b))
		} else {
			tb = append(tb, run(b))
			ta = append(ta, run(a))
		}
	}
	return ta, tb
}

// secWelch is Welch's t statistic of two samples.
func secWelch(a, b []float64) float64 {
	mv := func(x []float64) (float64, float64) {
		var m float64
		for _, v := range x {
			m += v
		}
		m /= float64(len(x))
		var v2 float64
		for _, v := range x {
			v2 += (v - m) * (v - m)
		}
		return m, v2 / float64(len(x)-1)
	}
	ma, va := mv(a)
	mb, vb := mv(b)
	se := math.Sqrt(va/float64(len(a)) + vb/float64(len(b)))
	if se == 0 {
		return 0
	}
	return (ma - mb) / se
}

// secLeak is the largest |t| of Welch's test over the two samples cropped at several
// percentiles of the pooled sample (the dudect method): timing noise is one-sided (a
// batch is only ever slowed down, by preemption or GC), so the lower part of the
// distribution shows a real difference best, and the crop removes the long tail.
func secLeak(a, b []float64) (maxT float64, at float64) {
	pooled := slices.Concat(a, b)
	slices.Sort(pooled)
	crop := func(x []float64, lim float64) []float64 {
		var out []float64
		for _, v := range x {
			if v <= lim {
				out = append(out, v)
			}
		}
		return out
	}
	for _, p := range []float64{0.25, 0.5, 0.75, 0.9, 1} {
		lim := pooled[min(len(pooled)-1, int(p*float64(len(pooled))))]
		ca, cb := crop(a, lim), crop(b, lim)
		if len(ca) < 20 || len(cb) < 20 {
			continue
		}
		if tv := math.Abs(secWelch(ca, cb)); tv > maxT {
			maxT, at = tv, p
		}
	}
	return maxT, at
}

func secMedian(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// secCBC decrypts hex(IV)+hex(ciphertext) with key and reports whether its PKCS#7
// padding is valid: the test's own knowledge, which a caller without the keys lacks.
func secCBC(t testing.TB, key [32]byte, data string) bool {
	t.Helper()
	raw, err := hex.DecodeString(data)
	if err != nil || len(raw) < 32 || len(raw)%16 != 0 {
		t.Fatalf("bad test data")
	}
	block, _ := aes.NewCipher(key[:])
	pt := make([]byte, len(raw)-16)
	cipher.NewCBCDecrypter(block, raw[:16]).CryptBlocks(pt, raw[16:])
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 16 {
		return false
	}
	for _, c := range pt[len(pt)-pad:] {
		if int(c) != pad {
			return false
		}
	}
	return true
}

// secTimingLeakBound is the |t| above which two inputs are taken to take different times.
// Under no difference, |t| beyond 6 has odds far below one in a million per statistic; the
// control below shows that a leak of a few percent of Open's time lands far above it.
const secTimingLeakBound = 6

// TestSecurityNoPaddingOracle checks the property that makes CBC safe against a padding
// oracle: a caller without the HMAC key cannot learn whether a ciphertext's padding is
// valid. Every request such a caller can make has a wrong MAC; for those, allpass.App.Open
// must return the same error whatever the padding, and take the same time.
//
// Inputs: a real webhook's data, whose padding is valid, and the same data with one
// ciphertext byte changed so that its padding is not (both checked with the key), each
// under the same wrong signature. Open's time on the two is compared by Welch's t-test
// over interleaved batches. The test shows it can fail: the same statistic, on an Open
// that checks padding before the MAC, and on one that spends a little longer (a few
// percent of Open's time) only when padding is valid, reports a leak.
//
// No absolute time is asserted: both sides of every comparison are measured in the same
// run, interleaved.
//
// The error check covers a caller who has the key too: MAC-valid data with bad padding
// gets exactly the error and code a wrong MAC gets.
func TestSecurityNoPaddingOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("statistical timing test; skipped with -short")
	}
	k := newKeys()
	keys := k.keys(t)
	app := &allpass.App{Name: "main", AppKey: domain.AppKey(newID()), Method: allpass.MethodCBC, Keys: []allpass.Keys{keys}}
	applicant := newID()
	plain, _ := json.Marshal(map[string]any{"type": "applicantApproved", "id": applicant, "appKey": string(app.AppKey),
		"externalUserId": "user-" + applicant[:8], "warnings": []string{}, "note": randomHex(64)})
	at := time.Now().UTC().Format(time.RFC3339)
	body, goodSig, err := allpass.Seal(allpass.MethodCBC, keys, plain, at, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if !secCBC(t, keys.Secret, env.Data) {
		t.Fatal("sealed data does not have valid padding")
	}
	// Change the last byte of the second-to-last ciphertext block (it XORs into the last
	// plaintext byte, the pad length) until the padding is invalid.
	pos := len(env.Data) - 2*16 - 2
	var badData string
	for v := 0; v < 256; v++ {
		cand := env.Data[:pos] + fmt.Sprintf("%02x", v) + env.Data[pos+2:]
		if cand != env.Data && !secCBC(t, keys.Secret, cand) {
			badData = cand
			break
		}
	}
	if badData == "" {
		t.Fatal("no ciphertext change made the padding invalid")
	}
	badBody := bytes.Replace(body, []byte(env.Data), []byte(badData), 1)
	macOf := func(data string) string {
		m := hmac.New(sha256.New, keys.HMAC)
		m.Write([]byte(data))
		return hex.EncodeToString(m.Sum(nil))
	}
	wrongSig := randomHex(32)
	goodPad := secInput{"wrong MAC, valid padding", body, wrongSig, true}
	badPad := secInput{"wrong MAC, invalid padding", badBody, wrongSig, false}

	// Same answer whatever failed.
	now := time.Now()
	if _, _, err := app.Open(body, goodSig, now, allpass.Options{}); err != nil {
		t.Fatalf("the genuine webhook does not open: %v", err)
	}
	var first error
	for _, in := range []secInput{goodPad, badPad, {"valid MAC, invalid padding", badBody, macOf(badData), false},
		{"no signature", body, "", true}, {"signature over the body, invalid padding", badBody, macOf(string(badBody)), false}} {
		_, _, err := app.Open(in.body, in.sig, now, allpass.Options{})
		if err == nil {
			t.Fatalf("%s: opened", in.name)
		}
		if first == nil {
			first = err
		}
		if domain.CodeOf(err) != domain.CodeOf(first) || err.Error() != first.Error() || domain.KindOf(err) != domain.KindOf(first) {
			t.Errorf("%s: %s %q (kind %v); %s gave %s %q (kind %v): the answers tell the failures apart",
				in.name, domain.CodeOf(err), err, domain.KindOf(err), goodPad.name, domain.CodeOf(first), first, domain.KindOf(first))
		}
	}

	open := func(in secInput) error { _, _, err := app.Open(in.body, in.sig, now, allpass.Options{}); return err }
	// Controls. decryptFirst is the classic padding oracle: padding checked before the
	// MAC, with an early return. slowValid spends a little longer when padding is valid;
	// work is how much (AES blocks decrypted), calibrated below to 5% of Open.
	decryptFirst := func(in secInput) error {
		if !in.validPad {
			return first
		}
		return open(in)
	}
	block, _ := aes.NewCipher(keys.Secret[:])
	var sink [16]byte
	work := 1
	slowValid := func(in secInput) error {
		err := open(in)
		if in.validPad {
			for range work {
				block.Decrypt(sink[:], sink[:])
			}
		}
		return err
	}

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds, batch = 3000, 16
	ta, tb := secSample(open, goodPad, badPad, rounds, batch, rng)
	perCall := secMedian(slices.Concat(ta, tb))
	// Size the control's extra work to about 5% of Open. One AES block's cost is the
	// fastest of several runs: preemption only ever slows a run down.
	blockNS := math.Inf(1)
	for range 20 {
		t0 := time.Now()
		for range 5000 {
			block.Decrypt(sink[:], sink[:])
		}
		blockNS = min(blockNS, float64(time.Since(t0).Nanoseconds())/5000)
	}
	work = max(1, int(0.05*perCall/blockNS))

	tv, p := secLeak(ta, tb)
	if tv > secTimingLeakBound {
		// A leak shows in every sample (the 5% control below reaches |t| of 35 or more);
		// noise from the rest of the machine seldom twice in a row: sample once more.
		t.Logf("Open, wrong MAC: max |t| %.2f over the bound on the first sample; sampling again", tv)
		ta, tb = secSample(open, goodPad, badPad, rounds, batch, rng)
		tv, p = secLeak(ta, tb)
	}
	t.Logf("Open, wrong MAC: median %.0f ns (valid padding) vs %.0f ns (invalid padding) over %d batches of %d; max |t| %.2f (crop %.2f), bound %d",
		secMedian(ta), secMedian(tb), rounds, batch, tv, p, secTimingLeakBound)
	if tv > secTimingLeakBound {
		t.Errorf("Open's time on a wrong MAC depends on whether the padding is valid: |t| = %.1f > %d (medians %.0f ns vs %.0f ns)",
			tv, secTimingLeakBound, secMedian(ta), secMedian(tb))
	}

	ca, cb := secSample(decryptFirst, goodPad, badPad, rounds/3, batch, rng)
	ctv, _ := secLeak(ca, cb)
	t.Logf("control, padding checked before the MAC: medians %.0f ns vs %.0f ns; max |t| %.1f", secMedian(ca), secMedian(cb), ctv)
	if ctv <= secTimingLeakBound {
		t.Errorf("the test cannot see a padding check before the MAC (|t| = %.1f): it proves nothing", ctv)
	}
	sa, sb := secSample(slowValid, goodPad, badPad, rounds, batch, rng)
	stv, _ := secLeak(sa, sb)
	t.Logf("control, %d extra AES blocks (%.0f ns, %.1f%% of Open) when padding is valid: medians %.0f ns vs %.0f ns; max |t| %.1f",
		work, float64(work)*blockNS, 100*float64(work)*blockNS/perCall, secMedian(sa), secMedian(sb), stv)
	if stv <= secTimingLeakBound {
		t.Errorf("the test cannot see a leak of %.0f ns per call (|t| = %.1f): it proves too little", float64(work)*blockNS, stv)
	}
}
