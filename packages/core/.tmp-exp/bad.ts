const a: number = 1;

export default {
  plugins: [ ,, 
  root: 'x' +,
};
