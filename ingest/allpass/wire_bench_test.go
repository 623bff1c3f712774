package allpass

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"testing"
	"time"
)

// BenchmarkOpen measures Open (parse the envelope, verify the MAC or tag, decrypt,
// validate the payload, build the event and its MsgID) on the ~460-byte vector webhooks,
// beside bare crypto/cipher decryption of the same ciphertext measured in the same run
// (the baseline: what the webhook costs at the least). It reports the baseline's ns/op
// and Open's cost as a multiple of it:
//
//	go test -run '^$' -bench BenchmarkOpen -benchtime 2s ./ingest/allpass
func BenchmarkOpen(b *testing.B) {
	vf := loadVectors(b)
	for _, tt := range []struct {
		name   string
		vector string
		method Method
	}{
		{"cbc", "cbc_hmac_data_hex", MethodCBC},
		{"gcm", "gcm_iv12_tag_hex", MethodGCM},
	} {
		b.Run(tt.name, func(b *testing.B) {
			var c vectorCase
			for _, v := range vf.Cases {
				if v.Name == tt.vector {
					c = v
				}
			}
			if c.Name == "" {
				b.Fatalf("vector %s missing", tt.vector)
			}
			app := vectorApp(b, vf, tt.method)
			raw, err := hex.DecodeString(mustEnvelope(b, []byte(c.Body)).Data)
			if err != nil {
				b.Fatal(err)
			}
			key := app.Keys[0].Secret
			var baseline func()
			switch tt.method {
			case MethodCBC:
				dst := make([]byte, len(raw)-aes.BlockSize)
				baseline = func() {
					block, err := aes.NewCipher(key[:])
					if err != nil {
						b.Fatal(err)
					}
					cipher.NewCBCDecrypter(block, raw[:aes.BlockSize]).CryptBlocks(dst, raw[aes.BlockSize:])
				}
			case MethodGCM:
				tag, err := hex.DecodeString(c.signature())
				if err != nil {
					b.Fatal(err)
				}
				sealed := append(raw[12:len(raw):len(raw)], tag...)
				baseline = func() {
					block, err := aes.NewCipher(key[:])
					if err != nil {
						b.Fatal(err)
					}
					aead, err := cipher.NewGCM(block)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := aead.Open(nil, raw[:12], sealed, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			benchOpen(b, app, []byte(c.Body), c.signature(), baseline)
		})
	}
}

// benchOpen runs b.N Opens under the benchmark's timer and b.N baseline calls timed by
// hand, interleaved in chunks so that both see the same machine: on a busy 2-core box a
// baseline measured before or after would make the ratio mostly noise.
func benchOpen(b *testing.B, app *App, body []byte, sig string, baseline func()) {
	const chunk = 256
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var base time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(chunk, b.N-done)
		b.StopTimer()
		start := time.Now()
		for i := 0; i < n; i++ {
			baseline()
		}
		base += time.Since(start)
		b.StartTimer()
		for i := 0; i < n; i++ {
			if _, _, err := app.Open(body, sig, received, Options{KeepRaw: true}); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	b.StopTimer()
	baseNs := float64(base.Nanoseconds()) / float64(b.N)
	openNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(baseNs, "baseline-ns/op")
	b.ReportMetric(openNs/baseNs, "x-baseline")
}
