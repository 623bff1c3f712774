package e2e

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestClusterComposeFiles checks what can be checked of docker-compose.yml without a
// container engine: it names three NATS nodes that nats-server accepts with the
// environment compose gives them (the same config the cluster tests run), routes that
// reach exactly those nodes, two ingest and two query nodes whose config points at all
// three servers with R3, a volume of its own for each query node, every secret the config
// names, and Dockerfile stages that exist, built with the Go version go.mod asks for.
func TestClusterComposeFiles(t *testing.T) {
	needBins(t)
	var compose struct {
		Services map[string]clComposeService `yaml:"services"`
		Volumes  map[string]any              `yaml:"volumes"`
		Secrets  map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	clReadYAML(t, "../docker-compose.yml", &compose)
	stages, baseArgs := clDockerStages(t)

	var natsSvcs, ingestSvcs, querySvcs []string
	for name, s := range compose.Services {
		if !slices.Contains(stages, s.Build.Target) || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("service %s builds %s target %q; deploy/Dockerfile has stages %v",
				name, s.Build.Dockerfile, s.Build.Target, stages)
		}
		// Each base image passes through, the Dockerfile's default unless the environment
		// names another.
		for arg, def := range baseArgs {
			if want := "${" + arg + ":-" + def + "}"; s.Build.Args[arg] != want {
				t.Errorf("service %s passes build arg %s = %q, want %q", name, arg, s.Build.Args[arg], want)
			}
		}
		switch {
		case s.Build.Target == "nats-server":
			natsSvcs = append(natsSvcs, name)
		case len(s.Command) > 0 && s.Command[0] == "ingest":
			ingestSvcs = append(ingestSvcs, name)
		case len(s.Command) > 0 && s.Command[0] == "query":
			querySvcs = append(querySvcs, name)
		default:
			t.Errorf("service %s is neither a NATS node nor kycstate ingest or query: %v", name, s.Command)
		}
	}
	slices.Sort(natsSvcs)
	if len(natsSvcs) != 3 || len(ingestSvcs) != 2 || len(querySvcs) != 2 {
		t.Fatalf("want 3 NATS, 2 ingest and 2 query services; have %v, %v, %v", natsSvcs, ingestSvcs, querySvcs)
	}

	// NATS: the deploy config, each variable it references set, routes to the three nodes.
	conf, err := os.ReadFile(clNATSConf)
	if err != nil {
		t.Fatal(err)
	}
	confAbs, err := filepath.Abs(clNATSConf)
	if err != nil {
		t.Fatal(err)
	}
	// The variables the config takes from the environment: those it references, comments
	// and quoted strings (subjects like "$JS.API.>") left out, that it does not define
	// itself (INGEST_PERMISSIONS = {...}).
	conf = regexp.MustCompile(`(?m)#.*$`).ReplaceAll(conf, nil)
	conf = regexp.MustCompile(`"[^"]*"`).ReplaceAll(conf, nil)
	var confVars, defined []string
	for _, m := range regexp.MustCompile(`(?m)^\s*([A-Z][A-Z0-9_]*)\s*[=:]`).FindAllStringSubmatch(string(conf), -1) {
		defined = append(defined, m[1])
	}
	for _, m := range regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(string(conf), -1) {
		if !slices.Contains(confVars, m[1]) && !slices.Contains(defined, m[1]) {
			confVars = append(confVars, m[1])
		}
	}
	// The identities' public keys come from compose's environment (deploy/compose.env, as
	// kycstate keygen --nats prints them); here from the test's own keygen.
	ids, routePassword := clNewIdentities(t, t.TempDir())
	composeVars := map[string]string{"NATS_CLUSTER_PASSWORD": routePassword}
	for name, v := range clIdentities {
		composeVars[v] = ids[name].pub
	}
	natsClientURLs := map[string]bool{}
	serverNames := map[string]string{}
	for _, name := range natsSvcs {
		s := compose.Services[name]
		confPath := s.mountOf(t, name, "./deploy/nats/nats-cluster.conf")
		if !slices.Equal(s.Command, []string{"-c", confPath}) {
			t.Errorf("%s: command %v, want -c %s", name, s.Command, confPath)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = clComposeInterpolate(t, name, v, composeVars)
		}
		for _, v := range confVars {
			if env[v] == "" {
				t.Errorf("%s: nats-cluster.conf references $%s, which the service does not set", name, v)
			}
		}
		for _, v := range slices.Concat(slices.Collect(maps.Values(clIdentities)), []string{"NATS_CLUSTER_PASSWORD"}) {
			if want := "${" + v + ":?"; !strings.HasPrefix(s.Environment[v], want) {
				t.Errorf("%s: %s is %q; want it required from compose's environment (%s...})", name, v, s.Environment[v], want)
			}
		}
		if prev, dup := serverNames[env["NATS_SERVER_NAME"]]; dup {
			t.Errorf("%s and %s share server name %q", prev, name, env["NATS_SERVER_NAME"])
		}
		serverNames[env["NATS_SERVER_NAME"]] = name
		if store := env["NATS_STORE_DIR"]; s.volumeAt(store) == "" {
			t.Errorf("%s: NATS_STORE_DIR %s is not on a named volume", name, store)
		}
		var routes []string
		for k, v := range env {
			if strings.HasPrefix(k, "NATS_ROUTE_") {
				routes = append(routes, v)
			}
		}
		var want []string
		for _, n := range natsSvcs {
			want = append(want, fmt.Sprintf("nats://kycstate-route:%s@%s:%s", routePassword, n, compose.Services[n].Environment["NATS_CLUSTER_PORT"]))
		}
		slices.Sort(routes)
		if !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want %v", name, routes, want)
		}
		natsClientURLs[fmt.Sprintf("nats://%s:%s", name, env["NATS_PORT"])] = true

		// nats-server itself checks the file with this node's environment.
		var envList []string
		for k, v := range env {
			envList = append(envList, k+"="+v)
		}
		out, err := runCmd(t, t.TempDir(), envList, 30*time.Second, bins.natsServer, "-t", "-c", confAbs)
		if err != nil || !strings.Contains(out, "is valid") {
			t.Errorf("%s: nats-server -t refuses the config with compose's environment: %v\n%s", name, err, out)
		}
	}

	// kycstate: the cluster config, pointing at every NATS node with R3.
	var kc struct {
		DataDir string `yaml:"data_dir"`
		NATS    struct {
			URL         string `yaml:"url"`
			Replicas    int    `yaml:"replicas"`
			Credentials string `yaml:"credentials"`
		} `yaml:"nats"`
	}
	clReadYAML(t, clKycstateConf, &kc)
	raw, err := os.ReadFile(clKycstateConf)
	if err != nil {
		t.Fatal(err)
	}
	if kc.NATS.Replicas != 3 {
		t.Errorf("cluster.yaml: nats.replicas %d, want 3", kc.NATS.Replicas)
	}
	urls := map[string]bool{}
	for _, u := range strings.Split(kc.NATS.URL, ",") {
		if _, err := url.Parse(strings.TrimSpace(u)); err != nil {
			t.Errorf("cluster.yaml: nats.url %q: %v", u, err)
		}
		urls[strings.TrimSpace(u)] = true
	}
	if fmt.Sprint(urls) != fmt.Sprint(natsClientURLs) {
		t.Errorf("cluster.yaml: nats.url names %v; the NATS services listen at %v", urls, natsClientURLs)
	}
	var secretVars []string
	for _, m := range regexp.MustCompile(`"env:([A-Za-z_][A-Za-z0-9_]*)"`).FindAllStringSubmatch(string(raw), -1) {
		secretVars = append(secretVars, m[1])
	}
	queryVolumes := map[string]string{}
	for _, name := range slices.Concat(ingestSvcs, querySvcs) {
		s := compose.Services[name]
		cfgPath := s.mountOf(t, name, "./deploy/kycstate/cluster.yaml")
		if !slices.Equal(s.Command[1:], []string{"--config", cfgPath}) {
			t.Errorf("%s: command %v, want %s --config %s", name, s.Command, s.Command[0], cfgPath)
		}
		for _, v := range append(secretVars, "KYCSTATE_APPS_0_APP_KEY") {
			if s.Environment[v] == "" {
				t.Errorf("%s: %s is not set; the config needs it", name, v)
			}
		}
		for _, n := range natsSvcs {
			if !slices.Contains(s.DependsOn, n) {
				t.Errorf("%s does not depend on %s", name, n)
			}
		}
		// Its identity's seed, and only that, at the path nats.credentials names.
		identity := s.Command[0]
		if len(s.Secrets) != 1 || "/run/secrets/"+s.Secrets[0].Target != kc.NATS.Credentials {
			t.Errorf("%s: secrets %+v; want one, mounted at nats.credentials %s", name, s.Secrets, kc.NATS.Credentials)
			continue
		}
		file := compose.Secrets[s.Secrets[0].Source].File
		if want := "./deploy/secrets/nats-" + identity + ".nk"; file != want {
			t.Errorf("%s: its NATS seed is secret %s from %q, want the %s identity's %s", name, s.Secrets[0].Source, file, identity, want)
		}
	}
	for name, sec := range compose.Secrets {
		if strings.Contains(sec.File, "admin") {
			t.Errorf("secret %s (%s): no container needs the admin identity", name, sec.File)
		}
		if !strings.HasPrefix(sec.File, "./deploy/secrets/") {
			t.Errorf("secret %s is %s, outside deploy/secrets/ (which .gitignore keeps out of the repository)", name, sec.File)
		}
	}
	if ign, err := os.ReadFile("../.gitignore"); err != nil || !regexp.MustCompile(`(?m)^/?deploy/secrets/$`).Match(ign) {
		t.Errorf(".gitignore does not keep deploy/secrets/ out of the repository (%v)", err)
	}
	for _, name := range querySvcs {
		vol := compose.Services[name].volumeAt(kc.DataDir)
		if vol == "" {
			t.Errorf("%s: data_dir %s is not on a named volume; the projection would not survive a restart", name, kc.DataDir)
		}
		if prev, dup := queryVolumes[vol]; dup {
			t.Errorf("%s and %s share volume %s; each query node needs its own projection", prev, name, vol)
		}
		queryVolumes[vol] = name
	}
	for _, s := range compose.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat("../" + src); err != nil {
					t.Errorf("volume %s mounts a file that does not exist: %v", v, err)
				}
			} else if _, ok := compose.Volumes[src]; !ok {
				t.Errorf("volume %s is not declared under volumes:", v)
			}
		}
	}
}

type clComposeService struct {
	Build struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Target     string            `yaml:"target"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   []string          `yaml:"depends_on"`
	Secrets     []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"secrets"`
}

// clComposeInterpolate replaces compose's ${NAME}, ${NAME:?message} and ${NAME:-default}
// in v with vars, as compose would with that environment; a required variable vars lacks
// fails the test.
func clComposeInterpolate(t *testing.T, service, v string, vars map[string]string) string {
	t.Helper()
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([?-])([^}]*))?\}`)
	return re.ReplaceAllStringFunc(v, func(m string) string {
		p := re.FindStringSubmatch(m)
		if val, ok := vars[p[1]]; ok {
			return val
		}
		switch p[2] {
		case "-":
			return p[3]
		case "?":
			t.Errorf("%s: needs %s, which the test does not give: %s", service, p[1], p[3])
		}
		return ""
	})
}

// mountOf returns where the service mounts the host file src, failing if it does not.
func (s clComposeService) mountOf(t *testing.T, name, src string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == src {
			return parts[1]
		}
	}
	t.Fatalf("%s does not mount %s (volumes %v)", name, src, s.Volumes)
	return ""
}

// volumeAt returns the named volume mounted at dir, or "".
func (s clComposeService) volumeAt(dir string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dir && !strings.HasPrefix(parts[0], ".") && !strings.HasPrefix(parts[0], "/") {
			return parts[0]
		}
	}
	return ""
}

func clReadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// clDockerStages returns deploy/Dockerfile's stage names and its base-image build
// arguments with their defaults, checking on the way that it builds with the Go release
// go.mod names and runs as a non-root user.
func clDockerStages(t *testing.T) ([]string, map[string]string) {
	t.Helper()
	df, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVer == nil {
		t.Fatal("go.mod has no go line")
	}
	// No "# syntax=" line: it pulls a frontend image, which a build without registry
	// access cannot, and the built-in frontend has RUN --mount.
	if regexp.MustCompile(`(?im)^#\s*syntax\s*=`).Match(df) {
		t.Error("Dockerfile has a # syntax= line")
	}
	var stages []string
	var froms []string
	// Base images are build arguments declared before the first FROM, with today's images
	// as defaults; FROM names them, and the defaults are what is checked.
	args := map[string]string{}
	for _, line := range strings.Split(string(df), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[0], "ARG") && len(froms) == 0 {
			if name, def, ok := strings.Cut(f[1], "="); ok {
				args[name] = def
			}
		}
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") {
			img := f[1]
			if strings.HasPrefix(img, "${") && strings.HasSuffix(img, "}") {
				def, ok := args[img[2:len(img)-1]]
				if !ok {
					t.Errorf("Dockerfile: FROM %s names no ARG declared before the first FROM", img)
				}
				img = def
			} else {
				t.Errorf("Dockerfile: FROM %s is not a build argument: a build where registries are mirrored cannot name its own", img)
			}
			froms = append(froms, img)
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stages = append(stages, f[3])
			}
		}
	}
	if len(froms) == 0 || froms[0] != "golang:"+string(goVer[1]) {
		t.Errorf("Dockerfile builds FROM %v; go.mod asks for Go %s", froms, goVer[1])
	}
	// Every runtime stage switches to the distroless nonroot user.
	if n := strings.Count(string(df), "\nUSER 65532:65532"); n != len(froms)-1 {
		t.Errorf("Dockerfile: %d runtime stages but %d USER 65532:65532 lines", len(froms)-1, n)
	}
	return stages, args
}
