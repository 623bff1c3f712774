package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// EraseFunc erases an applicant (DESIGN.md section 11): it appends applicantErased
// (origin operator, by and reason in its payload) and then destroys the data key. It
// returns the sequence of the appended event, and pending when the key's destruction did
// not complete yet (it is retried until it does). Errors: KindUnavailable when the event
// could not be appended (nothing was erased; retry). The applicant is (p, app, id), of
// any provider (DESIGN.md section 13): *erase.Eraser's EraseProvider.
type EraseFunc func(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, by, reason string) (seq uint64, pending bool, err error)

// Bounds of an erase request.
const (
	maxEraseBody   = 16 << 10
	maxReasonChars = 1000
)

// handleErase answers POST /v1/applicants/{id}/erase (admin) with {"reason":"..."}. It
// erases whatever the applicant's state, once the projection has applied the log as it
// stood when the request arrived (atHead); a repeated erasure appends another
// applicantErased and finds no key left to destroy, which is harmless. The answer waits
// (up to MaxWait) for the projection to apply the erasure, so a read that follows it
// sees erased: true. {id} and ?provider= name the applicant as on the read routes
// (DESIGN.md section 13): any provider's id, Allpass first, 409 ambiguous_applicant when
// two other providers hold it.
func (s *server) handleErase() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		ref, err := parseApplicantRef(q, r.PathValue("id"))
		if err != nil {
			return err
		}
		id := ref.raw
		if s.erase == nil {
			return errParam("erase", domain.KindNotFound, "this node does not erase: it was started without the key ring")
		}
		reason, err := readReason(w, r)
		if err != nil {
			return err
		}
		behind, ok, err := s.atHead(r.Context(), w)
		if !ok {
			return err
		}
		st, found, err := s.lookup(ref)
		if err != nil {
			return err
		}
		if !found {
			msg := "no applicant " + id
			if ref.provider != "" {
				msg = fmt.Sprintf("no %s applicant %s", ref.provider, id)
			}
			return notFoundAt(behind, msg)
		}
		p, _ := principalFrom(r.Context())
		seq, pending, err := s.erase(r.Context(), providerOf(st.Provider), st.AppKey, st.ApplicantID, p.name, reason)
		if err != nil {
			return err
		}
		s.log.Info("applicant erased", zap.String("provider", string(providerOf(st.Provider))), zap.String("applicantId", id), zap.String("token", p.name),
			zap.Uint64("seq", seq), zap.Bool("keyPending", pending))
		s.waitFor(r.Context(), w, seq)
		writeJSON(w, http.StatusOK, client.Erasure{ApplicantID: st.ApplicantID, Erased: true, Seq: seq,
			KeyDestroyed: !pending, Pending: pending})
		return nil
	})
}

func readReason(w http.ResponseWriter, r *http.Request) (string, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEraseBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", errParam("body", domain.KindTooLarge, fmt.Sprintf("body over %d bytes", maxEraseBody))
		}
		return "", errParam("body", domain.KindInvalid, "body not readable")
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		msg := `must be a JSON object {"reason":"..."}`
		// The decoder names a field it does not know; the name is the caller's own input.
		if field, ok := strings.CutPrefix(fmt.Sprint(err), "json: unknown field "); ok && len(field) <= 66 {
			msg = "unknown field " + field + ": " + msg
		}
		return "", errParam("body", domain.KindInvalid, msg)
	}
	if body.Reason == nil || strings.TrimSpace(*body.Reason) == "" {
		return "", errParam("reason", domain.KindInvalid, "an erasure needs a reason")
	}
	reason := strings.TrimSpace(*body.Reason)
	if utf8.RuneCountInString(reason) > maxReasonChars {
		return "", errParam("reason", domain.KindInvalid, fmt.Sprintf("longer than %d characters", maxReasonChars))
	}
	return reason, nil
}
