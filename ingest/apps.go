package ingest

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// appIndex finds configured apps by name or appKey.
type appIndex struct {
	all    []*allpass.App
	byName map[string]*allpass.App
	byKey  map[domain.AppKey][]*allpass.App
}

// newAppIndex validates apps and indexes them. Names must be unique and must not equal
// an appKey, or a path segment could name two apps.
func newAppIndex(apps []*allpass.App) (appIndex, error) {
	x := appIndex{
		all:    apps,
		byName: make(map[string]*allpass.App, len(apps)),
		byKey:  make(map[domain.AppKey][]*allpass.App, len(apps)),
	}
	for i, a := range apps {
		switch {
		case a == nil:
			return x, errors.New("app " + strconv.Itoa(i) + " is nil")
		case a.Name == "":
			return x, errors.New("app " + strconv.Itoa(i) + " has no name")
		}
		if err := a.Validate(); err != nil {
			return x, err
		}
		if _, dup := x.byName[a.Name]; dup {
			return x, errors.New("app name " + strconv.Quote(a.Name) + " is configured twice")
		}
		x.byName[a.Name] = a
		// Several apps may share an appKey (one per method, say): the path by appKey then
		// tries each of them, as the generic path does.
		key := domain.AppKey(strings.ToLower(string(a.AppKey)))
		x.byKey[key] = append(x.byKey[key], a)
	}
	for name := range x.byName {
		if _, clash := x.byKey[domain.AppKey(strings.ToLower(name))]; clash {
			return x, errors.New("app name " + strconv.Quote(name) + " equals an appKey")
		}
	}
	return x, nil
}

// lookup resolves an {app} path segment: a configured name, or an appKey (any case).
func (x appIndex) lookup(s string) ([]*allpass.App, bool) {
	if a, ok := x.byName[s]; ok {
		return []*allpass.App{a}, true
	}
	apps, ok := x.byKey[domain.AppKey(strings.ToLower(s))]
	return apps, ok
}

// openAny opens body with each app in turn and returns the first that accepts it. When
// none does, the error is the one from the app that got furthest (see progress): with
// two apps configured, a payload that verified under one app's key but failed validation
// says so, instead of the other app's signature mismatch.
func openAny(apps []*allpass.App, body []byte, sig string, receivedAt time.Time, opt allpass.Options) (*allpass.App, domain.Event, string, error) {
	var best error
	for _, a := range apps {
		ev, msgID, err := a.Open(body, sig, receivedAt, opt)
		if err == nil {
			return a, ev, msgID, nil
		}
		if best == nil || progress(err) > progress(best) {
			best = err
		}
	}
	return nil, domain.Event{}, "", best
}

// progress ranks an Open error by how far the webhook got: a payload failing validation
// passed authentication; a malformed plaintext was decrypted (a malformed envelope fails
// alike under every app); a signature mismatch got nowhere. Authentication and
// decryption failures share one code on purpose (no padding oracle), so they rank alike.
func progress(err error) int {
	switch domain.KindOf(err) {
	case domain.KindUnprocessable:
		return 3
	case domain.KindInvalid:
		return 2
	case domain.KindUnauthorized:
		return 1
	}
	return 0
}
