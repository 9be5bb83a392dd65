module github.com/rsp-go/rsp

go 1.26
