module github.com/lockerd/lockerd

go 1.24

require github.com/pebbe/zmq4 v1.4.0

require go.uber.org/goleak v1.3.0

require github.com/spf13/pflag v1.1.0 // indirect
