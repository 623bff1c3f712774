package veriff

import (
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
	"github.com/kycstate/kycstate/internal/vectorfile"
)

// suite runs testdata/vectors.json, written by testdata/gen from Veriff's documented
// algorithm and never by this package.
func suite() webhooktest.Suite {
	return webhooktest.Suite{
		Provider: domain.ProviderVeriff,
		App: func(name, key string, secrets [][]byte) webhooktest.Open {
			return (&App{Name: name, APIKey: key, Secrets: secrets}).Open
		},
		Signature: webhooktest.HeaderOf(HeaderSignature),
		Private:   []string{"user-4711", "f04bdb47"}, // the user and the session of the bodies
	}
}

// vectors is the file: the webhooks, and the signatures of the status API's GET.
type vectors struct {
	webhooktest.Vectors
	GetSignatures []struct {
		Secret    string `json:"secret"`
		SessionID string `json:"sessionId"`
		Signature string `json:"signature"`
	} `json:"getSignatures"`
}

func loadVectors(tb testing.TB) vectors {
	tb.Helper()
	var v vectors
	v.Vectors = webhooktest.Load(tb, 30, &v)
	if len(v.GetSignatures) == 0 {
		tb.Fatal("testdata/vectors.json: no GET signatures: the file is cut short")
	}
	return v
}

// vectorApp is the vectors' app.
func vectorApp(v vectors) *App {
	return &App{Name: v.App.Name, APIKey: v.App.APIKey, Secrets: v.Secrets(vectorfile.Case{})}
}

func TestVectors(t *testing.T) { suite().Run(t, loadVectors(t).Vectors) }

// TestSignMatchesVectors holds Sign to the signatures the generator made.
func TestSignMatchesVectors(t *testing.T) {
	loadVectors(t).CheckSign(t, HeaderSignature, Sign, 10)
}
