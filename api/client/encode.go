package client

import (
	"strconv"

	"github.com/kycstate/kycstate/internal/jsonscan"
)

// AppendJSON appends s as json.Marshal encodes it, byte for byte, without reflection:
// GET /v1/applicants/{id} is the API's most read answer, and the reflecting encoder was
// a tenth of its cost. The API's answers go through internal/httperr.WriteJSON, which
// uses this method when a value has it. TestStateAppendJSON fills every field of State
// by reflection and holds the two encodings to the same bytes, so a field added to State
// and not here fails it.
func (s State) AppendJSON(b []byte) []byte {
	b = append(b, `{"applicantId":`...)
	b = jsonscan.AppendString(b, string(s.ApplicantID), true)
	b = append(b, `,"appKey":`...)
	b = jsonscan.AppendString(b, string(s.AppKey), true)
	b = append(b, `,"provider":`...)
	b = jsonscan.AppendString(b, string(s.Provider), true)
	b = append(b, `,"externalUserId":`...)
	b = appendStringPtr(b, s.ExternalUserID)
	b = append(b, `,"status":`...)
	b = appendStringPtr(b, s.Status)
	b = append(b, `,"providerStatus":`...)
	b = appendStringPtr(b, s.ProviderStatus)
	b = append(b, `,"statusAt":`...)
	b = appendTimePtr(b, s.StatusAt)
	b = append(b, `,"lastEventAt":`...)
	b = s.LastEventAt.appendJSON(b)
	b = append(b, `,"lastSeq":`...)
	b = strconv.AppendUint(b, s.LastSeq, 10)
	b = append(b, `,"events":`...)
	b = strconv.AppendInt(b, int64(s.Events), 10)
	b = append(b, `,"stepsPassed":`...)
	b = appendStrings(b, s.StepsPassed)
	b = append(b, `,"flags":`...)
	b = appendStrings(b, s.Flags)
	b = append(b, `,"warnings":`...)
	b = appendStrings(b, s.Warnings)
	b = append(b, `,"anomalies":`...)
	b = strconv.AppendInt(b, int64(s.Anomalies), 10)
	b = append(b, `,"digest":`...)
	b = jsonscan.AppendString(b, s.Digest, true)
	b = append(b, `,"erased":`...)
	b = strconv.AppendBool(b, s.Erased)
	b = append(b, `,"reconciledAt":`...)
	b = appendTimePtr(b, s.ReconciledAt)
	return append(b, '}')
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return jsonscan.AppendString(b, *s, true)
}

func appendTimePtr(b []byte, t *Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return t.appendJSON(b)
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonscan.AppendString(b, s, true)
	}
	return append(b, ']')
}
