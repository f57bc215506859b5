package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dockerBuildArgs returns the flags of the Dockerfile's `go build` line,
// with ${VERSION} set to version, so that the test builds exactly what the
// image would. The Docker engine itself is not needed (nor available in CI).
func dockerBuildArgs(t *testing.T, version string) []string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "RUN CGO_ENABLED=0 go build "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		args := splitQuoted(strings.ReplaceAll(strings.TrimPrefix(line, prefix), "${VERSION}", version))
		// Drop "-o PATH" and the package: the test picks its own output.
		for i := 0; i < len(args); i++ {
			if args[i] == "-o" {
				return args[:i]
			}
		}
		t.Fatalf("Dockerfile build line has no -o: %q", line)
	}
	t.Fatalf("Dockerfile has no line starting %q", prefix)
	return nil
}

// splitQuoted splits a shell word list with double quotes (enough for the
// Dockerfile's line; no escapes).
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// dynamic reports what makes an ELF file depend on a loader: a PT_INTERP
// program header or DT_NEEDED libraries.
func dynamic(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "PT_INTERP")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return append(why, libs...)
}

// TestDockerBuildIsStatic builds the binary with the Dockerfile's command
// line and checks it is static (no interpreter, no shared library) and
// runs, with the version the build set. The race-enabled test binary is
// the negative control: cgo makes it dynamic, and the check says so.
func TestDockerBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary again; skipped in -short mode")
	}
	args := dockerBuildArgs(t, "v0.0.0-dockertest")
	out := filepath.Join(t.TempDir(), "ambassador")
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", out, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	if why := dynamic(t, out); len(why) > 0 {
		t.Fatalf("the Dockerfile's build is not static: %v", why)
	}
	if got := releaseBuildTags(t, out); got != releaseTags {
		t.Fatalf("the Dockerfile's build has -tags %q, want %q (release_test.go)", got, releaseTags)
	}
	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "ambassador v0.0.0-dockertest\n") {
		t.Fatalf("static binary's version: %v: %s", err, v)
	}
	if raceEnabled && len(dynamic(t, binary)) == 0 {
		t.Fatal("the race-enabled build looks static too: the check cannot tell")
	}
}

// TestDockerImage builds the Dockerfile with a real Docker engine and runs
// the image the way the pattern does, with host networking: `version`, the
// image's size and static binary, a node that forwards a service and
// answers on its status address, a graceful stop (SIGTERM, exit 0), and
// contrib/compose.yaml both validated and brought up with docker-compose.
// The node keeps to loopback (--no-mdns, --bind 127.0.0.1): host
// networking would otherwise send mDNS to the machine's LAN.
//
// It needs root and a reachable engine; .ci/docker provides both on a
// Debian machine (installs docker.io, starts dockerd, makes stand-in base
// images when no registry answers). AMB_DOCKER_BASE picks the final
// stage's base (default: the Dockerfile's, distroless, which must then be
// pullable).
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Docker image; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (host networking, docker.sock)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine reachable (docker info: " + err.Error() + "); .ci/docker starts one")
	}
	base := os.Getenv("AMB_DOCKER_BASE")
	if base == "" {
		base = "gcr.io/distroless/static-debian12" // the Dockerfile's default
	}
	for _, image := range []string{"golang:1.26-bookworm", base} {
		if image != "scratch" && !imageAvailable(image) {
			t.Skip("base image " + image + " is neither here nor pullable; .ci/docker makes stand-ins")
		}
	}
	const version = "v0.0.0-dockertest"
	tag := fmt.Sprintf("ambassador:dockertest-%d", os.Getpid())
	args := []string{"build", "--pull=false", "--network", "host", "--build-arg", "VERSION=" + version, "-t", tag}
	args = append(args, "--build-arg", "BASE="+base)
	start := time.Now()
	docker(t, 25*time.Minute, append(args, ".")...)
	t.Logf("docker build: %v", time.Since(start).Round(time.Second))
	t.Cleanup(func() { exec.Command("docker", "rmi", tag).Run() })

	out := docker(t, time.Minute, "run", "--rm", "--network", "host", tag, "version")
	if !strings.HasPrefix(out, "ambassador "+version+"\n") {
		t.Fatalf("docker run %s version: %q, want first line %q", tag, out, "ambassador "+version)
	}
	t.Logf("docker run --rm --network host %s version:\n%s", tag, out)

	size, baseSize := imageSize(t, tag), int64(0)
	if base != "scratch" {
		baseSize = imageSize(t, base)
	}
	t.Logf("image size: %.1f MB, of which %.1f MB over the base %s", float64(size)/1e6, float64(size-baseSize)/1e6, base)
	// The binary is about 16 MB; the builder stage is over 400.
	if limit := int64(30e6); size-baseSize > limit {
		t.Errorf("the image adds %d bytes to its base, more than %d: is the build stage in it?", size-baseSize, limit)
	}

	id := strings.TrimSpace(docker(t, time.Minute, "create", tag))
	bin := filepath.Join(t.TempDir(), "ambassador")
	docker(t, time.Minute, "cp", id+":/usr/local/bin/ambassador", bin)
	docker(t, time.Minute, "rm", id)
	if why := dynamic(t, bin); len(why) > 0 {
		t.Errorf("the image's binary is not static: %v", why)
	}

	t.Run("node", func(t *testing.T) { dockerNode(t, tag) })
	t.Run("compose", func(t *testing.T) { dockerCompose(t, tag) })
}

// dockerNode runs the image as a node with host networking that announces
// a service of the test's, and reaches it through the node's listener.
func dockerNode(t *testing.T, tag string) {
	echo := echoServer(t)
	ports := freePorts(t, 4)
	name := fmt.Sprintf("amb-dockertest-%d", os.Getpid())
	status := fmt.Sprintf("127.0.0.1:%d", ports[2])
	docker(t, time.Minute, "run", "-d", "--name", name, "--network", "host",
		"--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "--read-only", "--tmpfs", "/run/ambassador:mode=0700",
		tag, "--no-mdns", "--bind", "127.0.0.1",
		"--gossip-port", strconv.Itoa(ports[0]), "--data-port", strconv.Itoa(ports[1]),
		"--http", status, "--announce", fmt.Sprintf("dockertest:%d=%s", ports[3], echo))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })

	listen := fmt.Sprintf("127.0.0.1:%d", ports[3])
	if err := poll(30*time.Second, func() error { return serviceListening(status, "dockertest", listen) }); err != nil {
		t.Fatalf("the container's status address %s: %v\n%s", status, err, dockerLogs(name))
	}
	if got, err := roundTrip(listen, "through the container\n"); err != nil || got != "through the container\n" {
		t.Fatalf("through the container's listener %s: %q, %v", listen, got, err)
	}
	stillUp(t, name)

	// docker stop sends the image's STOPSIGNAL and kills after -t seconds:
	// a graceful leave exits 0 long before; 137 would be the kill.
	start := time.Now()
	docker(t, time.Minute, "stop", "-t", "45", name)
	took := time.Since(start)
	code := strings.TrimSpace(docker(t, time.Minute, "inspect", "-f", "{{.State.ExitCode}}", name))
	logs := dockerLogs(name)
	if code != "0" || !strings.Contains(logs, "msg=leaving") {
		t.Fatalf("docker stop: exit code %s after %v, want 0 and a graceful leave:\n%s", code, took, logs)
	}
	t.Logf("docker stop: exit 0 after %v", took.Round(time.Millisecond))
	if _, err := http.Get("http://" + status + "/v1/health"); err == nil {
		t.Fatalf("status address %s still answers after docker stop", status)
	}
}

// dockerCompose validates contrib/compose.yaml with docker-compose and
// brings its ambassador service up with an override that keeps it on
// loopback, points /etc/hosts at a file of the test's and gives it a key:
// the hosts block must appear in that bind-mounted file (rewritten in
// place, the root file system being read-only) and be gone after down.
func dockerCompose(t *testing.T, tag string) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("no docker-compose (Debian package docker-compose)")
	}
	compose := func(timeout time.Duration, args ...string) string {
		t.Helper()
		return runCmd(t, timeout, "docker-compose", args...)
	}
	compose(time.Minute, "-f", "contrib/compose.yaml", "config", "-q")

	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	const before = "127.0.0.1\tlocalhost\n10.9.8.7\tsomething-else # kept byte for byte\n"
	if err := os.WriteFile(hosts, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(docker(t, time.Minute, "run", "--rm", tag, "keygen")), 0o600); err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	ports := freePorts(t, 4)
	status := fmt.Sprintf("127.0.0.1:%d", ports[2])
	override := filepath.Join(dir, "override.yaml")
	yaml := fmt.Sprintf(`services:
  ambassador:
    image: %s
    command:
      - --hosts=/etc/hosts
      - --no-mdns
      - --bind=127.0.0.1
      - --gossip-port=%d
      - --data-port=%d
      - --http=%s
      - --announce=dockertest:%d=%s
    volumes:
      - %s:/etc/hosts
secrets:
  ambassador_key:
    file: %s
`, tag, ports[0], ports[1], status, ports[3], echo, hosts, key)
	if err := os.WriteFile(override, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	project := fmt.Sprintf("ambdockertest%d", os.Getpid())
	files := []string{"-p", project, "-f", "contrib/compose.yaml", "-f", override}
	t.Cleanup(func() { exec.Command("docker-compose", append(files, "down", "-t", "45")...).Run() })
	compose(5*time.Minute, append(files, "up", "-d", "--no-build", "ambassador")...)

	listen := fmt.Sprintf("127.0.0.1:%d", ports[3])
	if err := poll(30*time.Second, func() error { return serviceListening(status, "dockertest", listen) }); err != nil {
		t.Fatalf("compose's ambassador on %s: %v\n%s", status, err, runCmd(t, time.Minute, "docker-compose", append(files, "logs")...))
	}
	if err := poll(10*time.Second, func() error {
		b, err := os.ReadFile(hosts)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(b), before) || !strings.Contains(string(b), "127.0.0.1\tdockertest") {
			return fmt.Errorf("no dockertest line after the kept lines:\n%s", b)
		}
		return nil
	}); err != nil {
		t.Fatalf("hosts block: %v", err)
	}
	if got, err := roundTrip(listen, "through compose\n"); err != nil || got != "through compose\n" {
		t.Fatalf("through compose's listener %s: %q, %v", listen, got, err)
	}
	stillUp(t, project+"_ambassador_1") // docker-compose v1's container name
	compose(2*time.Minute, append(files, "down", "-t", "45")...)
	if b, err := os.ReadFile(hosts); err != nil || string(b) != before {
		t.Fatalf("hosts file after down: %v\n%q, want\n%q", err, b, before)
	}
}

// imageAvailable reports whether image is here or could be pulled.
func imageAvailable(image string) bool {
	if exec.Command("docker", "image", "inspect", image).Run() == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "pull", "-q", image).Run() == nil
}

func imageSize(t *testing.T, image string) int64 {
	t.Helper()
	size, err := strconv.ParseInt(strings.TrimSpace(docker(t, time.Minute, "image", "inspect", "-f", "{{.Size}}", image)), 10, 64)
	if err != nil {
		t.Fatalf("size of image %s: %v", image, err)
	}
	return size
}

// stillUp fails unless the container runs and never restarted: a node
// that exits at start (compose restarts it) can answer between restarts.
func stillUp(t *testing.T, name string) {
	t.Helper()
	if got := strings.TrimSpace(docker(t, time.Minute, "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name)); got != "true 0" {
		t.Fatalf("container %s: running, restarts = %s, want true 0\n%s", name, got, dockerLogs(name))
	}
}

// docker runs the docker client and returns its standard output.
func docker(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	return runCmd(t, timeout, "docker", args...)
}

func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), lastLines(stderr.String(), 30))
	}
	return stdout.String()
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func dockerLogs(name string) string {
	b, _ := exec.Command("docker", "logs", name).CombinedOutput()
	return lastLines(string(b), 20)
}

// poll calls f until it succeeds or timeout passes: the container is
// another process, with nothing to wait on but its answers.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// serviceListening asks the status API whether service is forwarded on
// listen.
func serviceListening(status, service, listen string) error {
	resp, err := http.Get("http://" + status + "/v1/services")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v struct {
		Services []struct {
			Name, Listen, State string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return fmt.Errorf("decode /v1/services: %w", err)
	}
	for _, s := range v.Services {
		if s.Name == service {
			if s.Listen == listen && s.State == "listening" {
				return nil
			}
			return fmt.Errorf("%s is %s on %s, want listening on %s", service, s.State, s.Listen, listen)
		}
	}
	return fmt.Errorf("no service %s in /v1/services", service)
}

// echoServer echoes each connection's bytes back until EOF, on loopback.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends msg, half-closes and reads the answer to EOF.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// freePorts returns n loopback TCP ports free a moment ago (the container
// binds them, so the test cannot hold them open).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
