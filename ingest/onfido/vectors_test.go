package onfido

import (
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
	"github.com/kycstate/kycstate/internal/vectorfile"
)

// suite runs testdata/vectors.json, written by testdata/gen from Onfido's documented
// algorithm (and Onfido's published examples) and never by this package.
func suite() webhooktest.Suite {
	return webhooktest.Suite{
		Provider: domain.ProviderOnfido,
		App: func(name, _ string, secrets [][]byte) webhooktest.Open {
			return (&App{Name: name, Secrets: secrets}).Open
		},
		Signature: webhooktest.HeaderOf(HeaderSignature),
		Private:   []string{"user-4711", "check-123", "2f152409"}, // the user, the check and the run of the bodies
	}
}

func loadVectors(tb testing.TB) webhooktest.Vectors { return webhooktest.Load(tb, 30) }

// vectorApp is the vectors' app.
func vectorApp(v webhooktest.Vectors) *App {
	return &App{Name: v.App.Name, Secrets: v.Secrets(vectorfile.Case{})}
}

// TestVectors opens every vector, Onfido's published examples among them (signed with
// tokens of their own).
func TestVectors(t *testing.T) {
	v := loadVectors(t)
	suite().Run(t, v)
	published := 0
	for _, c := range v.Cases {
		if c.Source != "" {
			published++
		}
	}
	if published < 2 {
		t.Fatalf("%d of Onfido's published examples in the vectors, want 2", published)
	}
}

// TestSignMatchesVectors holds Sign to the signatures the generator made.
func TestSignMatchesVectors(t *testing.T) {
	loadVectors(t).CheckSign(t, HeaderSignature, Sign, 10)
}
