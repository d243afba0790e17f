// Validates Kubernetes objects against the API's OpenAPI schemas, offline, with
// the npm package kubernetes-models (pinned in package.json beside this file).
//
//   node validate_schemas.js INSTALL_DIR < objects.json
//
// INSTALL_DIR holds the node_modules that `npm ci` made from this directory's
// package-lock.json (make test-k8s puts it in the build directory). stdin: a
// JSON array of {"source": "file.yaml#1", "object": {...}}. stdout: a JSON
// array, one entry per object in the same order: {"source", "ok", "errors"}.
// An apiVersion or kind that kubernetes-models does not know is an error: an
// object that cannot be checked must not pass.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

if (process.argv.length !== 3) {
  process.stderr.write('usage: node validate_schemas.js INSTALL_DIR < objects.json\n');
  process.exit(2);
}
// Resolves packages from INSTALL_DIR/node_modules, wherever this script lies.
const requireInstalled = createRequire(path.join(path.resolve(process.argv[2]), 'package.json'));

function modelOf(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    return { error: 'apiVersion and kind must both be strings' };
  }
  let models;
  try {
    // kubernetes-models/v1, kubernetes-models/apps/v1, kubernetes-models/policy/v1, ...
    models = requireInstalled(`kubernetes-models/${apiVersion}`);
  } catch (e) {
    if (e.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED' || e.code === 'MODULE_NOT_FOUND') {
      return { error: `unknown apiVersion ${apiVersion}` };
    }
    throw e;
  }
  const Model = Object.prototype.hasOwnProperty.call(models, kind) ? models[kind] : undefined;
  // Only top-level kinds carry their own apiVersion and kind; PodSpec and the
  // like are exported too but are not objects one can apply.
  if (typeof Model !== 'function' || Model.apiVersion !== apiVersion || Model.kind !== kind) {
    return { error: `unknown kind ${kind} in ${apiVersion}` };
  }
  return { Model };
}

function describe(ajvError) {
  // "/spec/replicas must be integer"; a missing field names itself.
  const where = ajvError.instancePath || '(top level)';
  const extra = ajvError.params && ajvError.params.allowedValues
    ? ` (${ajvError.params.allowedValues.join(', ')})`
    : '';
  return `${where} ${ajvError.message}${extra}`;
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const results = input.map(({ source, object }) => {
  const { Model, error } = modelOf(object && object.apiVersion, object && object.kind);
  if (error) return { source, ok: false, errors: [error] };
  try {
    new Model(object).validate();
    return { source, ok: true, errors: [] };
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    return { source, ok: false, errors: e.errors.map(describe) };
  }
});
process.stdout.write(JSON.stringify(results));
