[
  inputs: ["{mix,.formatter}.exs", "{config,lib,test,bench,examples,native,tools}/**/*.{ex,exs}"],
  line_length: 110
]
