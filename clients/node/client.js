#!/usr/bin/env node
// A Node.js client of the marketing suite, built from protos/ at run time with
// @grpc/proto-loader. Usage:
//   node client.js <address> <package.Service> <Method> '<request JSON>'
// Environment: MKT_API_KEY (sent as a bearer token), PROTO_INCLUDE (extra include
// directories for the googleapis protos, separated by ':').
'use strict';

const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function protoFiles(root) {
  const out = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    if (entry.isDirectory()) out.push(...protoFiles(full));
    else if (entry.name.endsWith('.proto')) out.push(path.relative(protoRoot, full));
  }
  return out;
}

const protoRoot = path.resolve(__dirname, '..', '..', 'protos');

function main() {
  const [address, serviceName, method, json] = process.argv.slice(2);
  if (!address || !serviceName || !method) {
    console.error('usage: node client.js <address> <package.Service> <Method> [request JSON]');
    process.exit(2);
  }
  const includeDirs = [protoRoot, ...(process.env.PROTO_INCLUDE || '').split(':').filter(Boolean)];
  const definition = protoLoader.loadSync(protoFiles(protoRoot), {
    includeDirs, keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const Service = serviceName.split('.').reduce((node, part) => node && node[part], loaded);
  if (!Service) {
    console.error(`unknown service ${serviceName}`);
    process.exit(2);
  }
  const client = new Service(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (process.env.MKT_API_KEY) metadata.set('authorization', `Bearer ${process.env.MKT_API_KEY}`);
  const request = json ? JSON.parse(json) : {};
  client[method](request, metadata, { deadline: Date.now() + 10000 }, (err, response) => {
    if (err) {
      console.log(JSON.stringify({ error: { code: err.code, details: err.details } }));
      process.exit(1);
    }
    console.log(JSON.stringify(response));
    client.close();
  });
}

main();
