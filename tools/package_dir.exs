# Lays out, in DIR, exactly the files of Munition's Hex package (mix.exs's
# `package: [files: ...]`, expanded as Hex expands them: globs, and folders
# with everything under them), so that a project can depend on what users
# install rather than on the repository (`make consumer`).
#
#     mix run --no-compile --no-start tools/package_dir.exs DIR

[dir] = System.argv()
root = File.cwd!()
File.rm_rf!(dir)

entries = Mix.Project.config()[:package][:files]

# Hex refuses a package whose list names a file that is not there.
case Enum.filter(entries, &(Path.wildcard(Path.join(root, &1)) == [])) do
  [] -> :ok
  missing -> raise "the package lists files that do not exist: #{inspect(missing)}"
end

files =
  for entry <- entries,
      match <- Path.wildcard(Path.join(root, entry)),
      path <- if(File.dir?(match), do: Path.wildcard(Path.join(match, "**"), match_dot: true), else: [match]),
      File.regular?(path),
      do: Path.relative_to(path, root)

if files == [], do: raise("the package lists no files")

for file <- files do
  File.mkdir_p!(Path.join(dir, Path.dirname(file)))
  File.cp!(Path.join(root, file), Path.join(dir, file))
end

IO.puts("#{dir}: the package's #{length(files)} files")
