package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// Keys opens sealed externalUserIds at the edge and hashes externalUserIds for lookups
// (DESIGN.md section 11): the projection holds neither a key nor an id in clear. The
// event log's key ring (eventlog.Keyring) implements it.
type Keys interface {
	// OpenExternalUserID opens a sealed id of applicant (app, id). Errors: KindNotFound
	// when the applicant's key is destroyed or was never made (the id is gone: shown as
	// null); KindUnavailable when the key store does not answer; KindInternal when the
	// value does not open (tampered, or moved from another applicant).
	OpenExternalUserID(ctx context.Context, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error)
	// Index is the blind index of (app, ext), as the sealed events carry it.
	Index(app domain.AppKey, ext domain.ExternalUserID) domain.ExternalUserIndex
}

// EraseFunc erases an applicant (DESIGN.md section 11): it appends applicantErased
// (origin operator, by and reason in its payload) and then destroys the data key. It
// returns the sequence of the appended event, and pending when the key's destruction did
// not complete yet (it is retried until it does). Errors: KindUnavailable when the event
// could not be appended (nothing was erased; retry).
type EraseFunc func(ctx context.Context, app domain.AppKey, id domain.ApplicantID, by, reason string) (seq uint64, pending bool, err error)

// Bounds of an erase request.
const (
	maxEraseBody   = 16 << 10
	maxReasonChars = 1000
)

// handleErase answers POST /v1/applicants/{id}/erase (admin) with {"reason":"..."}. It
// erases whatever the applicant's state; a repeated erasure appends another
// applicantErased and finds no key left to destroy, which is harmless. The answer waits
// (up to MaxWait) for the projection to apply the erasure, so a read that follows it
// sees erased: true.
func (s *server) handleErase() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		id, err := parseUUID("id", r.PathValue("id"))
		if err != nil {
			return err
		}
		if s.erase == nil {
			return errParam("erase", domain.KindNotFound, "this node does not erase: it was started without the key ring")
		}
		reason, err := readReason(w, r)
		if err != nil {
			return err
		}
		st, found, err := s.proj.State(domain.ApplicantID(id))
		if err != nil {
			return err
		}
		if !found {
			return errParam("id", domain.KindNotFound, "no applicant "+id)
		}
		p, _ := principalFrom(r.Context())
		seq, pending, err := s.erase(r.Context(), st.AppKey, st.ApplicantID, p.name, reason)
		if err != nil {
			return err
		}
		s.log.Info("applicant erased", zap.String("applicantId", id), zap.String("token", p.name),
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

// externalUserID returns the id to show for a state: in clear (an applicant whose latest
// id came in a version 1 event), opened from its sealed form, or null (none, or erased).
func (s *server) externalUserID(ctx context.Context, app domain.AppKey, id domain.ApplicantID, clear domain.ExternalUserID, sealed domain.SealedExternalUserID) (*string, error) {
	if clear != "" {
		return strPtr(clear), nil
	}
	if sealed == "" {
		return nil, nil
	}
	if s.keys == nil {
		return nil, domain.E("api.externalUserId", domain.KindUnavailable, "this node has no key ring to open externalUserIds")
	}
	ext, err := s.keys.OpenExternalUserID(ctx, app, id, sealed)
	if domain.KindOf(err) == domain.KindNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strPtr(ext), nil
}

// stateView is newStateView with the externalUserId opened.
func (s *server) stateView(ctx context.Context, st domain.State) (client.State, error) {
	v := newStateView(st)
	ext, err := s.externalUserID(ctx, st.AppKey, st.ApplicantID, st.ExternalUserID, st.SealedExternalUserID)
	v.ExternalUserID = ext
	return v, err
}

func (s *server) stateViews(ctx context.Context, ss []domain.State) ([]client.State, error) {
	out := make([]client.State, len(ss))
	for i, st := range ss {
		v, err := s.stateView(ctx, st)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// openState fills st.ExternalUserID from its sealed form, for the console, which shows
// domain states.
func (s *server) openState(ctx context.Context, st domain.State) (domain.State, error) {
	var err error
	st.ExternalUserID, err = s.openedID(ctx, st.AppKey, st.ApplicantID, st.ExternalUserID, st.SealedExternalUserID)
	return st, err
}

// openedID is externalUserID in the domain's form, for the console's rows: "" for none,
// or for an erased applicant's.
func (s *server) openedID(ctx context.Context, app domain.AppKey, id domain.ApplicantID,
	clear domain.ExternalUserID, sealed domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	ext, err := s.externalUserID(ctx, app, id, clear, sealed)
	if ext == nil || err != nil {
		return "", err
	}
	return domain.ExternalUserID(*ext), nil
}

// byExternalUserID finds the applicants of ext (of app, if not empty): those whose id is
// in clear through the clear index, those whose id is sealed through the blind index,
// each blind match checked by opening its id. In applicant id order, at most limit.
func (s *server) byExternalUserID(ctx context.Context, ext domain.ExternalUserID, app domain.AppKey, limit int) ([]domain.State, error) {
	out, err := s.proj.ByExternalUserID(ext, app, limit)
	if err != nil || s.keys == nil {
		return out, err
	}
	blind, err := s.proj.ByExternalUserIndex(func(a domain.AppKey) domain.ExternalUserIndex { return s.keys.Index(a, ext) }, app, limit)
	if err != nil {
		return nil, err
	}
	for _, st := range blind {
		got, err := s.externalUserID(ctx, st.AppKey, st.ApplicantID, "", st.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		if got != nil && *got == string(ext) {
			st.ExternalUserID = ext
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b domain.State) int { return strings.Compare(string(a.ApplicantID), string(b.ApplicantID)) })
	out = slices.CompactFunc(out, func(a, b domain.State) bool { return a.ApplicantID == b.ApplicantID })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *server) changeViews(ctx context.Context, cs []domain.Change) ([]client.Change, error) {
	out := newChangeViews(cs)
	for i, c := range cs {
		ext, err := s.externalUserID(ctx, c.AppKey, c.ApplicantID, c.ExternalUserID, c.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		out[i].ExternalUserID = ext
	}
	return out, nil
}

func (s *server) anomalyViews(ctx context.Context, rs []domain.Record) ([]client.Anomaly, error) {
	out := newAnomalyViews(rs)
	for i, r := range rs {
		ext, err := s.externalUserID(ctx, r.AppKey, r.ApplicantID, r.ExternalUserID, r.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		out[i].ExternalUserID = ext
	}
	return out, nil
}
